"""ListJobs pagination and filters, and retention pruning."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from reelscan.service.errors import InvalidArgument
from reelscan.service.jobs.engine import JobEngine
from reelscan.service.jobs.model import Job, JobKind, JobState
from tests.jobs.conftest import EngineFactory
from tests.jobs.handlers import SteppedHandler, eventually

STATES = [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT, JobState.SUCCEEDED]


def _finished(i: int, *, state: JobState, finish_time: float | None = None) -> Job:
    now = time.time()
    return Job(
        id=f"job-{i:03d}",
        kind=JobKind.SCAN,
        state=state,
        spec={"i": i},
        timeout_s=60.0,
        create_time=now,
        update_time=now,
        start_time=now,
        finish_time=finish_time if finish_time is not None else now,
        seq=3,
    )


async def _walk(engine: JobEngine, page_size: int, **filters: Any) -> list[str]:
    ids: list[str] = []
    token = ""
    pages = 0
    while True:
        jobs, token = await engine.list(page_size=page_size, page_token=token, **filters)
        assert len(jobs) <= page_size
        ids += [j.id for j in jobs]
        pages += 1
        if not token:
            return ids
        assert pages < 100


async def test_pagination_walks_every_job_once_newest_first(make_engine: EngineFactory) -> None:
    store = await make_engine.store()
    for i in range(23):
        await store.insert(_finished(i, state=STATES[i % len(STATES)]))
    engine = await make_engine(SteppedHandler())
    newest_first = [f"job-{i:03d}" for i in reversed(range(23))]
    for page_size in (1, 5, 23, 50):
        assert await _walk(engine, page_size, states=(), kinds=()) == newest_first
    failed_or_cancelled = [j for j in newest_first if STATES[int(j[4:]) % 5] in (JobState.FAILED, JobState.CANCELLED)]
    got = await _walk(engine, 3, states=(JobState.CANCELLED, JobState.FAILED), kinds=(JobKind.SCAN,))
    assert got == failed_or_cancelled
    assert await _walk(engine, 4, states=(JobState.RUNNING,), kinds=()) == []


async def test_pages_are_stable_while_jobs_are_added(make_engine: EngineFactory) -> None:
    store = await make_engine.store()
    for i in range(10):
        await store.insert(_finished(i, state=JobState.SUCCEEDED))
    engine = await make_engine(SteppedHandler(1, auto_delay_s=0))
    first, token = await engine.list(states=(), kinds=(), page_size=4, page_token="")
    for _ in range(3):  # newer jobs arrive between pages: they do not shift the walk
        await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    rest: list[str] = []
    while token:
        jobs, token = await engine.list(states=(), kinds=(), page_size=4, page_token=token)
        rest += [j.id for j in jobs]
    assert [j.id for j in first] + rest == [f"job-{i:03d}" for i in reversed(range(10))]


async def test_bad_page_tokens_are_invalid_argument(make_engine: EngineFactory) -> None:
    store = await make_engine.store()
    for i in range(5):
        await store.insert(_finished(i, state=JobState.SUCCEEDED))
    engine = await make_engine(SteppedHandler())
    _, token = await engine.list(states=(JobState.SUCCEEDED, JobState.FAILED), kinds=(), page_size=2, page_token="")
    assert token
    with pytest.raises(InvalidArgument, match="different filters"):
        await engine.list(states=(JobState.FAILED,), kinds=(), page_size=2, page_token=token)
    with pytest.raises(InvalidArgument, match="different filters"):
        await engine.list(states=(), kinds=(), page_size=2, page_token=token)
    # The same filters in another order are the same filters; another page size is fine.
    jobs, _ = await engine.list(states=(JobState.FAILED, JobState.SUCCEEDED), kinds=(), page_size=3, page_token=token)
    assert [j.id for j in jobs] == ["job-002", "job-001", "job-000"]
    for garbage in ("not a token", "e30", "eyJ2IjoxLCJwIjpbIngiXSwiZiI6IiJ9", "%%%", token[:-3]):
        with pytest.raises(InvalidArgument):
            await engine.list(states=(JobState.SUCCEEDED, JobState.FAILED), kinds=(), page_size=2, page_token=garbage)
    with pytest.raises(InvalidArgument):
        await engine.list(states=(), kinds=(), page_size=0, page_token="")


async def test_list_serves_live_progress_of_running_jobs(make_engine: EngineFactory) -> None:
    handler = SteppedHandler(4)
    engine = await make_engine(handler, checkpoint_interval_s=3600)  # the store lags behind on purpose
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    await handler.started(job.id)
    handler.step(job.id, 1)

    async def quarter() -> bool:
        return (await engine.get(job.id)).progress.fraction == 0.25

    await eventually(quarter)
    jobs, _ = await engine.list(states=(JobState.RUNNING,), kinds=(), page_size=10, page_token="")
    assert [j.progress.fraction for j in jobs] == [0.25]


async def test_retention_prunes_old_finished_jobs_only(make_engine: EngineFactory) -> None:
    store = await make_engine.store()
    now = time.time()
    await store.insert(_finished(1, state=JobState.SUCCEEDED, finish_time=now - 100))
    await store.insert(_finished(2, state=JobState.FAILED, finish_time=now - 100))
    await store.insert(_finished(3, state=JobState.SUCCEEDED, finish_time=now + 3600))  # recent enough
    pending = dataclasses.replace(_finished(4, state=JobState.PENDING), finish_time=None, start_time=None)
    handler = SteppedHandler(1)
    await store.insert(pending)
    engine = await make_engine(handler, retention_s=10, prune_interval_s=0.05)

    async def pruned() -> bool:
        jobs, _ = await engine.list(states=(), kinds=(), page_size=10, page_token="")
        return [j.id for j in jobs] == ["job-004", "job-003"]

    await eventually(pruned, what="old finished jobs pruned")
    assert sorted(handler.deleted) == ["job-001", "job-002"]
    assert (await engine.get("job-004")).state is JobState.RUNNING  # active jobs are never pruned
    handler.step("job-004")
    await engine.wait("job-004", 5)


async def test_retention_loop_prunes_jobs_finished_by_this_engine(make_engine: EngineFactory) -> None:
    handler = SteppedHandler(1, auto_delay_s=0)
    engine = await make_engine(handler, retention_s=0.2, prune_interval_s=0.05)
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    assert (await engine.wait(job.id, 5)).state is JobState.SUCCEEDED

    async def gone() -> bool:
        jobs, _ = await engine.list(states=(), kinds=(), page_size=10, page_token="")
        return not jobs

    await eventually(gone, what="pruned after retention")
    assert handler.deleted == [job.id]
