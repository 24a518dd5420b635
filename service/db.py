"""Opening the SQLite database. Each store opens its own connection (aiosqlite runs each on its own thread), so a
store's multi-statement transaction is never interleaved with another store's writes."""

from __future__ import annotations

from pathlib import Path

import aiosqlite


async def connect(path: Path) -> aiosqlite.Connection:
    """Opens `path` in WAL mode with settings suited to one writer per store and many readers."""
    conn = await aiosqlite.connect(str(path), isolation_level=None)  # autocommit; stores BEGIN explicitly
    conn.row_factory = aiosqlite.Row
    await conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across process crashes (kill -9) in WAL mode; only an OS crash can lose the last commits.
    await conn.execute("PRAGMA synchronous=NORMAL")
    await conn.execute("PRAGMA busy_timeout=10000")
    await conn.execute("PRAGMA foreign_keys=ON")
    return conn
