"""Two engines on one database: the shape several replicas have.

On SQLite both engines share one store object (one server per file); on PostgreSQL each has its own store and
pool, as two replica processes would, and changes reach the other one through LISTEN/NOTIFY. Each engine is a
server with its own identity and lease; the store decides who runs what. These tests prove the
ownership rules through the engine API: a job runs on exactly one engine, any engine reads, watches and cancels a
job running on the other, and when an engine stops heartbeating the other recovers its jobs once the lease has
expired, while the stale engine's later writes are refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from reelscan.service.jobs.engine import JobEngine
from reelscan.service.jobs.model import Job, JobKind, JobState
from reelscan.service.jobs.pg_store import PgJobStore
from reelscan.service.jobs.sqlite_store import SqliteJobStore
from reelscan.service.jobs.store import JobStore
from reelscan.service.pg.database import PgDatabase
from tests.jobs.handlers import Recorder, SteppedHandler, eventually

FAST_LEASE: dict[str, Any] = {
    "lease_ttl_s": 0.6,
    "heartbeat_interval_s": 0.1,
    "recovery_interval_s": 0.1,
    "poll_interval_s": 0.2,
    "checkpoint_interval_s": 0.02,
    "publish_interval_s": 0.01,
}


class Pair:
    def __init__(self, open_store: Callable[[], Awaitable[JobStore]]) -> None:
        self._open_store = open_store
        self.store: JobStore  # the first engine's store, for looking at rows
        self.engines: list[JobEngine] = []
        self.handlers: list[SteppedHandler] = []

    async def add(self, handler: SteppedHandler, **options: Any) -> JobEngine:
        settings: dict[str, Any] = {
            "max_concurrent": 2,
            "max_queued": 100,
            "default_timeout_s": 30.0,
            "retention_s": 3600.0,
            "max_watchers": 100,
            **FAST_LEASE,
            **options,
        }
        store = await self._open_store()
        if not self.engines:
            self.store = store
        engine = JobEngine(store, **settings)
        engine.register(JobKind.SCAN, handler)
        await engine.start()
        self.engines.append(engine)
        self.handlers.append(handler)
        return engine

    def runner_of(self, job_id: str) -> int:
        """Index of the engine whose handler ran `job_id` (the test fails if both or neither did)."""
        ran = [i for i, h in enumerate(self.handlers) if job_id in h.runs]
        assert len(ran) == 1, f"job {job_id} ran on engines {ran}"
        return ran[0]


@pytest.fixture(params=["sqlite", "postgresql"])
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Pair]:
    closers: list[Callable[[], Awaitable[None]]] = []
    if request.param == "sqlite":
        shared = await SqliteJobStore.open(tmp_path / "jobs.db", take_over=True)
        closers.append(shared.close)

        async def open_store() -> JobStore:
            return shared

    else:
        url = request.getfixturevalue("pg_url")

        async def open_store() -> JobStore:
            db = await PgDatabase.open(url)
            store = await PgJobStore.open(db)
            closers.extend([db.close, store.close])  # run in reverse: the store first
            return store

    pair = Pair(open_store)
    try:
        yield pair
    finally:
        for engine in pair.engines:
            await engine.close()
        for close in reversed(closers):
            await close()


async def _started(pair: Pair, job_id: str) -> int:
    async def ran() -> bool:
        return any(job_id in h.runs for h in pair.handlers)

    await eventually(ran, what=f"job {job_id} started on some engine")
    return pair.runner_of(job_id)


async def test_each_job_runs_on_exactly_one_engine(pair: Pair) -> None:
    a = await pair.add(SteppedHandler(3, auto_delay_s=0.005))
    b = await pair.add(SteppedHandler(3, auto_delay_s=0.005))
    submitted = []
    for i in range(40):
        job, _ = await (a if i % 2 else b).submit(JobKind.SCAN, {"n": i}, timeout_s=None)
        submitted.append(job.id)
    finals = [await (b if i % 2 else a).wait(job_id, 10) for i, job_id in enumerate(submitted)]
    assert all(j.state is JobState.SUCCEEDED and j.progress.fraction == 1.0 for j in finals)
    runs_a, runs_b = pair.handlers[0].runs, pair.handlers[1].runs
    assert sorted(runs_a + runs_b) == sorted(submitted)  # every job ran, none twice
    assert not set(runs_a) & set(runs_b)
    assert runs_a and runs_b, "both engines had free slots, so both should have claimed work"
    owners = {j.owner for j in finals}
    assert owners == {a.owner.id, b.owner.id}  # each finished job names the engine that ran it


async def test_dedup_and_queue_bound_hold_across_engines(pair: Pair) -> None:
    a = await pair.add(SteppedHandler(1), max_concurrent=1, max_queued=2)
    b = await pair.add(SteppedHandler(1), max_concurrent=1, max_queued=2)
    first, existed = await a.submit(JobKind.SCAN, {}, timeout_s=None, dedup_key="/media")
    assert not existed
    again, existed = await b.submit(JobKind.SCAN, {}, timeout_s=None, dedup_key="/media")
    assert existed and again.id == first.id


async def test_other_engine_reads_watches_and_cancels_a_running_job(pair: Pair) -> None:
    await pair.add(SteppedHandler(4))
    await pair.add(SteppedHandler(4))
    job, _ = await pair.engines[0].submit(JobKind.SCAN, {}, timeout_s=None)
    owner_index = await _started(pair, job.id)
    owner, other = pair.engines[owner_index], pair.engines[1 - owner_index]
    handler = pair.handlers[owner_index]
    watcher = Recorder(other.watch(job.id))
    handler.step(job.id, 2)

    async def half_done_elsewhere() -> bool:
        return (await other.get(job.id)).progress.done == 2

    await eventually(half_done_elsewhere, what="the owner's progress seen through the other engine")
    listed, _ = await other.list(states=[JobState.RUNNING], kinds=[], page_size=10, page_token="")
    assert [j.id for j in listed] == [job.id] and listed[0].owner == owner.owner.id

    response = await other.cancel(job.id)
    assert response.state is JobState.RUNNING and response.cancel_requested
    final = await other.wait(job.id, 5)
    assert final.state is JobState.CANCELLED and final.result == {"probed": 2}
    assert handler.cancelled == [job.id]  # the handler on the owner was stopped, not left running
    seen = await watcher.done()
    assert [s.seq for s in seen] == sorted({s.seq for s in seen})  # strictly increasing
    assert any(s.state is JobState.RUNNING and 0 < s.progress.fraction < 1 for s in seen)
    assert seen[-1].state is JobState.CANCELLED

    async def owner_agrees() -> bool:
        # The owner's memory follows its own write a moment after the row (and the other engine) has it: the
        # commit returns after the NOTIFY that let the other engine read the final row.
        return (await owner.get(job.id)) == final

    await eventually(owner_agrees, what="the owner's own view of the final job")


async def test_a_silent_engine_loses_its_jobs_and_its_late_writes_are_refused(pair: Pair) -> None:
    await pair.add(SteppedHandler(4))
    await pair.add(SteppedHandler(4))
    job, _ = await pair.engines[0].submit(JobKind.SCAN, {"path": "/m"}, timeout_s=None)
    stale_index = await _started(pair, job.id)
    stale, survivor = pair.engines[stale_index], pair.engines[1 - stale_index]
    stale_handler, survivor_handler = pair.handlers[stale_index], pair.handlers[1 - stale_index]
    stale_handler.step(job.id, 1)

    async def checkpointed() -> bool:
        stored = await pair.store.get(job.id)
        return stored is not None and stored.progress.done == 1

    await eventually(checkpointed, what="the first item checkpointed")
    stale.lease.suspend()  # as if the process froze: no heartbeats, no local deadline

    await survivor_handler.started(job.id, limit_s=5)  # recovered after the lease expired, then claimed
    recovered = await pair.store.get(job.id)
    assert recovered is not None and recovered.state is JobState.RUNNING
    assert recovered.owner == survivor.owner.id and recovered.recoveries == 1

    # The stale engine wakes up and finishes its run: nothing it writes may land.
    stale_handler.step(job.id, 3)

    async def stale_run_over() -> bool:
        return job.id in stale_handler.finished or job.id in stale_handler.cancelled

    await eventually(stale_run_over, what="the stale engine's run to end")
    await asyncio.sleep(0.2)
    now = await pair.store.get(job.id)
    assert now is not None and now.state is JobState.RUNNING and now.owner == survivor.owner.id
    assert now.epoch == recovered.epoch

    survivor_handler.step(job.id, 4)
    final: Job = await stale.wait(job.id, 5)  # the stale engine now follows the store, like any reader
    assert final.state is JobState.SUCCEEDED and final.owner == survivor.owner.id
    assert final.result == {"probed": 4}
