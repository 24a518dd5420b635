"""Fixtures for engine tests: real SQLite files, engines that are always closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from reelscan.service.jobs.engine import JobEngine
from reelscan.service.jobs.handler import JobHandler
from reelscan.service.jobs.model import JobKind
from reelscan.service.jobs.sqlite_store import SqliteJobStore


class EngineFactory:
    """Builds started engines on one database file; closes them all at the end of the test."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.engines: list[JobEngine] = []
        self._stores: list[SqliteJobStore] = []

    async def __call__(self, handler: JobHandler | None = None, *, start: bool = True, **kwargs: Any) -> JobEngine:
        options: dict[str, Any] = {
            "max_concurrent": 2,
            "max_queued": 100,
            "default_timeout_s": 30.0,
            "retention_s": 3600.0,
            "max_watchers": 100,
        }
        options.update(kwargs)
        # A new engine on its own store is a new server: it holds the database, so earlier owners are dead.
        store = await SqliteJobStore.open(self.db_path, take_over=True)
        self._stores.append(store)
        engine = JobEngine(store, **options)
        if handler is not None:
            engine.register(JobKind.SCAN, handler)
        self.engines.append(engine)
        if start:
            await engine.start()
        return engine

    async def store(self) -> SqliteJobStore:
        """Another connection to the same file, as a second process would see it."""
        store = await SqliteJobStore.open(self.db_path)
        self._stores.append(store)
        return store

    async def close_all(self) -> None:
        for engine in self.engines:
            await engine.close()
        for store in self._stores:
            await store.close()


@pytest.fixture
async def make_engine(tmp_path: Path) -> AsyncIterator[EngineFactory]:
    factory = EngineFactory(tmp_path / "jobs.db")
    try:
        yield factory
    finally:
        await factory.close_all()
