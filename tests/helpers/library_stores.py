"""Every LibraryStore implementation, as a factory the library contract suite runs against.

A factory takes a fresh temporary directory and the test's request (through which it may ask for other fixtures,
as PostgreSQL's asks for `pg_url`: only tests that use it start the session's cluster) and is an async context
manager that yields an empty store and disposes of it afterwards. A new implementation joins every contract test
by adding one entry to LIBRARY_STORE_FACTORIES.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from reelscan.service.pg.database import PgDatabase
from reelscan.service.scan.library_store import LibraryStore
from reelscan.service.scan.pg_library_store import PgLibraryStore
from reelscan.service.scan.sqlite_library_store import SqliteLibraryStore

LibraryStoreFactory = Callable[[Path, pytest.FixtureRequest], AbstractAsyncContextManager[LibraryStore]]


@asynccontextmanager
async def sqlite_library_store(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[LibraryStore]:
    store = await SqliteLibraryStore.open(tmp_path / "lib.db")
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def pg_library_store(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[LibraryStore]:
    """A store on a fresh database of the session's PostgreSQL cluster (skips where there is none). The store
    does not own the pool, so the database is closed here, after the store."""
    db = await PgDatabase.open(request.getfixturevalue("pg_url"))
    try:
        store = await PgLibraryStore.open(db)
        try:
            yield store
        finally:
            await store.close()
    finally:
        await db.close()


LIBRARY_STORE_FACTORIES: list[tuple[str, LibraryStoreFactory]] = [
    ("sqlite", sqlite_library_store),
    ("postgresql", pg_library_store),
]
