"""Versioned schema migrations on PostgreSQL, one component (jobs, library) at a time.

Each component's versions are a list of statements per version. Migrating takes a transaction-level advisory
lock first, so replicas that start at once migrate once (the others wait, then find the version current); a
database whose version is newer than this server knows is refused with a clear message (a rollback must not let
an old server write rows it does not understand).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from reelscan.service.pg.database import DatabaseError

MIGRATION_LOCK = 0x7265656C  # "reel": the advisory lock key all reelscan migrations share


async def migrate(
    conn: psycopg.AsyncConnection[Any], component: str, versions: Mapping[int, Sequence[str]], where: str
) -> int:
    """Brings `component` to the newest version in `versions` (1..N); returns that version."""
    newest = max(versions)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions (component text PRIMARY KEY, version integer NOT NULL)"
        )
        cur = await conn.execute("SELECT version FROM schema_versions WHERE component = %s", (component,))
        row = await cur.fetchone()
        current = int(row[0]) if row else 0
        if current > newest:
            raise DatabaseError(
                f"the {component} schema at {where} is version {current}, newer than this reelscan understands "
                f"({newest}); upgrade reelscan (or point it at another database)"
            )
        for version in range(current + 1, newest + 1):
            for statement in versions[version]:
                await conn.execute(statement)
        if current == 0:
            await conn.execute("INSERT INTO schema_versions (component, version) VALUES (%s, %s)", (component, newest))
        elif current < newest:
            await conn.execute("UPDATE schema_versions SET version = %s WHERE component = %s", (newest, component))
    return newest
