"""Every JobStore implementation, as the contract suite (test_store_contract.py) sees it.

An entry of JOB_STORES names an implementation and an async factory that makes a fresh, empty database for one
test. The database opens any number of stores on itself, each on its own connection, as several replicas (or a
restarted server) would see it. A new implementation (PostgreSQL: a fresh schema per test) is one more entry.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest

from reelscan.service.jobs.model import JobState
from reelscan.service.jobs.pg_store import PgJobStore
from reelscan.service.jobs.sqlite_store import SqliteJobStore
from reelscan.service.jobs.store import JobStore
from reelscan.service.pg.database import PgDatabase


class JobDatabase(Protocol):
    async def open_store(self, **options: Any) -> JobStore:
        """A new store (its own connection) on this database; `options` are implementation-specific."""
        ...

    def committed(self, job_id: str) -> tuple[int, JobState, bool] | None:
        """(seq, state, cancel_requested) of the job as another connection sees it right now, i.e. only what is
        committed; None if no such row. Synchronous, so that a change listener can call it."""
        ...

    async def drop(self) -> None:
        """Removes the database (after every store on it was closed)."""
        ...


# (tmp_path, the test's request: a factory may ask it for other fixtures, e.g. pg_url) -> a fresh database
JobDatabaseFactory = Callable[[Path, pytest.FixtureRequest], Awaitable[JobDatabase]]


class SqliteJobDatabase:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def open_store(self, **options: Any) -> JobStore:
        return await SqliteJobStore.open(self.path, **options)

    def committed(self, job_id: str) -> tuple[int, JobState, bool] | None:
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            row = conn.execute("SELECT seq, state, cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else (row[0], JobState(row[1]), bool(row[2]))

    async def drop(self) -> None:
        pass  # tmp_path is removed by pytest


async def sqlite_database(tmp_path: Path, request: pytest.FixtureRequest) -> JobDatabase:
    return SqliteJobDatabase(tmp_path / "jobs.db")


class PgJobDatabase:
    """A fresh PostgreSQL database of the session's throwaway cluster; each store gets its own pool, as each
    replica has."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._databases: list[PgDatabase] = []

    async def open_store(self, **options: Any) -> JobStore:
        db = await PgDatabase.open(self.url, **options)
        self._databases.append(db)
        return await PgJobStore.open(db)

    def committed(self, job_id: str) -> tuple[int, JobState, bool] | None:
        with psycopg.connect(self.url) as conn:
            row = conn.execute("SELECT seq, state, cancel_requested FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return None if row is None else (row[0], JobState(row[1]), bool(row[2]))

    async def drop(self) -> None:
        for db in self._databases:
            await db.close()


async def postgres_database(tmp_path: Path, request: pytest.FixtureRequest) -> JobDatabase:
    return PgJobDatabase(request.getfixturevalue("pg_url"))


JOB_STORES: list[tuple[str, JobDatabaseFactory]] = [
    ("sqlite", sqlite_database),
    ("postgresql", postgres_database),
]


class StoreSet:
    """The stores one test opened on one fresh database; all closed at the end of the test."""

    def __init__(self, name: str, database: JobDatabase) -> None:
        self.name = name
        self.database = database
        self._open: list[JobStore] = []

    async def open(self, **options: Any) -> JobStore:
        store = await self.database.open_store(**options)
        self._open.append(store)
        return store

    async def close(self, store: JobStore) -> None:
        await store.close()
        self._open.remove(store)

    async def close_all(self) -> None:
        while self._open:
            await self._open.pop().close()
        await self.database.drop()
