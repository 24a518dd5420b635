"""Every LibraryStore implementation, as a factory the library contract suite runs against.

A factory takes a fresh temporary directory and is an async context manager that yields an empty store and
disposes of it afterwards. A new implementation (PostgreSQL next) joins every contract test by adding one entry to
LIBRARY_STORE_FACTORIES.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from reelscan.service.scan.library_store import LibraryStore
from reelscan.service.scan.sqlite_library_store import SqliteLibraryStore

LibraryStoreFactory = Callable[[Path], AbstractAsyncContextManager[LibraryStore]]


@asynccontextmanager
async def sqlite_library_store(tmp_path: Path) -> AsyncIterator[LibraryStore]:
    store = await SqliteLibraryStore.open(tmp_path / "lib.db")
    try:
        yield store
    finally:
        await store.close()


LIBRARY_STORE_FACTORIES: list[tuple[str, LibraryStoreFactory]] = [
    ("sqlite", sqlite_library_store),
]
