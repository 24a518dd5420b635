"""One factory for the stores: `--db` names a SQLite file (one server) or a PostgreSQL URL (several replicas),
and this module builds the JobStore and LibraryStore for it, plus what differs between the two in operation.

- SQLite: the server first takes the file's lock (sqlite_lock.py), so a second server on the same file is refused;
  holding it proves every owner recorded in the file is dead, so their jobs are recovered at once (take_over).
- PostgreSQL: one pool shared by both stores, schema migrated at start-up, changes announced with LISTEN/NOTIFY.
  Progress is checkpointed as often as it is published, so watchers on other replicas see it move as smoothly as
  watchers on the owner do.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from reelscan.service.config import Settings
from reelscan.service.jobs.sqlite_store import SqliteJobStore
from reelscan.service.jobs.store import JobStore
from reelscan.service.scan.library_store import LibraryStore
from reelscan.service.scan.sqlite_library_store import SqliteLibraryStore
from reelscan.service.sqlite_lock import SqliteLock

log = logging.getLogger(__name__)

SQLITE_CHECKPOINT_INTERVAL_S = 1.0
PG_CHECKPOINT_INTERVAL_S = 0.1


@dataclass
class Stores:
    jobs: JobStore
    library: LibraryStore
    backend: str  # "sqlite" or "postgresql"
    where: str  # the database, as an operator names it (no password)
    checkpoint_interval_s: float
    connected: Callable[[], bool] = lambda: True  # False while the database cannot be reached
    set_address: Callable[[str], Awaitable[None]] | None = None  # tells the SQLite lock where we listen
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        """Closes everything in reverse order of opening (the SQLite lock last)."""
        while self._closers:
            close = self._closers.pop()
            try:
                await close()
            except Exception:
                log.exception("closing the database failed")


async def open_stores(settings: Settings) -> Stores:
    if settings.db_url:
        return await _open_postgres(settings)
    return await _open_sqlite(settings)


async def _open_sqlite(settings: Settings) -> Stores:
    # One server per SQLite file: a second one is refused here (DatabaseInUse), before any store is opened.
    lock = await SqliteLock.acquire(settings.db_path)
    closers: list[Callable[[], Awaitable[None]]] = [lock.release]
    try:
        jobs = await SqliteJobStore.open(settings.db_path, take_over=True)
        closers.append(jobs.close)
        library = await SqliteLibraryStore.open(settings.db_path)
        closers.append(library.close)
    except BaseException:
        await Stores(None, None, "", "", 0.0, _closers=closers).close()  # type: ignore[arg-type]
        raise
    return Stores(
        jobs,
        library,
        "sqlite",
        str(settings.db_path),
        SQLITE_CHECKPOINT_INTERVAL_S,
        set_address=lock.update_address,
        _closers=closers,
    )


async def _open_postgres(settings: Settings) -> Stores:
    # Imported here so SQLite-only servers never load the PostgreSQL driver.
    from reelscan.service.jobs.pg_store import PgJobStore
    from reelscan.service.pg.database import PgDatabase
    from reelscan.service.scan.pg_library_store import PgLibraryStore

    # A transaction stalled for a whole lease is a frozen replica's: by then its jobs are others' to recover.
    db = await PgDatabase.open(
        settings.db_url, password_file=settings.db_password_file, stall_timeout_s=settings.lease_ttl_s
    )
    closers: list[Callable[[], Awaitable[None]]] = [db.close]
    try:
        jobs = await PgJobStore.open(db)
        closers.append(jobs.close)
        library = await PgLibraryStore.open(db)
        closers.append(library.close)
    except BaseException:
        await Stores(None, None, "", "", 0.0, _closers=closers).close()  # type: ignore[arg-type]
        raise
    return Stores(
        jobs,
        library,
        "postgresql",
        db.where,
        PG_CHECKPOINT_INTERVAL_S,
        connected=lambda: jobs.listening,
        _closers=closers,
    )
