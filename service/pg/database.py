"""Connecting to PostgreSQL: one pool for ordinary queries, plus dedicated connections on demand (the change
listener and the lease heartbeat must never wait behind a busy pool, and LISTEN does not survive pooling).

Bad settings fail fast with a message naming host, port and database, never the password: the first connection
is made here with a short connect timeout, so an unreachable host, a wrong password or a missing database ends
start-up within seconds. A password may come from the URL, libpq's own PGPASSWORD / ~/.pgpass, or a file.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5
POOL_MAX_SIZE = 10
URL_SCHEMES = ("postgresql://", "postgres://")


class DatabaseError(Exception):
    """The database cannot be used with these settings; str() is the message for the operator."""


def is_postgres_url(value: str) -> bool:
    return value.startswith(URL_SCHEMES)


def describe(info: dict[str, Any]) -> str:
    """host, port, database and user of a connection: what an operator needs to find it, without the password."""
    host = info.get("host") or info.get("hostaddr") or "localhost (unix socket)"
    return f"host {host} port {info.get('port') or 5432} database {info.get('dbname') or '(default)'} " + (
        f"user {info['user']}" if info.get("user") else "(default user)"
    )


class PgDatabase:
    """A reachable database: its pool and how to open more connections like it."""

    def __init__(self, conninfo: str, pool: AsyncConnectionPool, where: str) -> None:
        self.conninfo = conninfo
        self.pool = pool
        self.where = where  # describe() of it, for messages

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        password_file: Path | None = None,
        pool_max_size: int = POOL_MAX_SIZE,
        stall_timeout_s: float | None = None,
    ) -> PgDatabase:
        """`stall_timeout_s`: how long one of our transactions may stall. Ours last milliseconds; one that stalls
        belongs to a frozen process (SIGSTOP, a paused VM, a long GC pause), and its row locks (the library fence's
        FOR SHARE on a job row) would keep every other replica from recovering that job for as long as it stays
        frozen. The server ends a pooled session idle inside a transaction that long
        (idle_in_transaction_session_timeout). It does not end a COPY whose rows stopped coming (that session is
        not idle, and a COPY waiting for its client ignores statement_timeout), so no transaction of ours holds
        such a lock during a COPY (pg_library_store.write_batch stages its rows first)."""
        try:
            info: dict[str, Any] = conninfo_to_dict(url)
        except psycopg.ProgrammingError as error:
            raise DatabaseError(f"--db is not a valid PostgreSQL URL: {_scrub(str(error), url)}") from None
        if password_file is not None:
            try:
                info["password"] = (await asyncio.to_thread(password_file.read_text)).strip()
            except OSError as error:
                raise DatabaseError(f"cannot read --db-password-file {password_file}: {error.strerror}") from None
        info.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
        info.setdefault("application_name", "reelscan")
        # TCP keepalives: a connection to a host that vanished (cut network) is found dead in ~20 s, not hours.
        for key, value in (("keepalives", "1"), ("keepalives_idle", "10"), ("keepalives_interval", "3")):
            info.setdefault(key, value)
        info.setdefault("keepalives_count", "3")
        conninfo = make_conninfo(**info)
        where = describe(info)
        secret = str(info.get("password") or "")
        try:
            probe = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        except psycopg.Error as error:
            reason = _scrub(str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__, secret)
            raise DatabaseError(f"cannot connect to PostgreSQL at {where}: {reason}") from None
        await probe.close()
        configure = None
        timeout_ms = max(1, round(stall_timeout_s * 1000)) if stall_timeout_s is not None else None
        if timeout_ms is not None:

            async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
                await conn.execute(f"SET idle_in_transaction_session_timeout = {timeout_ms}")

        pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_max_size,
            # Autocommit: stores open transactions explicitly. No prepared statements, so a transaction-mode
            # PgBouncer in front works too.
            kwargs={"autocommit": True, "prepare_threshold": None},
            configure=configure,
            open=False,
            name="reelscan",
            timeout=30,
        )
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
        log.info("connected to PostgreSQL at %s", where)
        return cls(conninfo, pool, where)

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        """A dedicated autocommit connection outside the pool (caller closes it)."""
        return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True, prepare_threshold=None)

    async def close(self) -> None:
        await self.pool.close()


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text
