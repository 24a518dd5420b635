"""Queueing, concurrency, deadlines, failures, dedup and waiting."""

from __future__ import annotations

import asyncio

import pytest

from reelscan.service.errors import InvalidArgument, PermissionDenied, ResourceExhausted
from reelscan.service.jobs import runner as runner_module
from reelscan.service.jobs.handler import JobContext
from reelscan.service.jobs.model import JobKind, JobState, Stage
from tests.jobs.conftest import EngineFactory
from tests.jobs.handlers import Recorder, SteppedHandler, eventually


async def test_at_most_max_concurrent_jobs_run(make_engine: EngineFactory) -> None:
    handler = SteppedHandler(1)
    engine = await make_engine(handler, max_concurrent=2)
    jobs = [(await engine.submit(JobKind.SCAN, {"n": i}, timeout_s=None))[0] for i in range(3)]
    await handler.started(jobs[0].id)
    await handler.started(jobs[1].id)
    await asyncio.sleep(0.05)
    assert handler.runs == [jobs[0].id, jobs[1].id]
    assert (await engine.get(jobs[2].id)).state is JobState.PENDING
    handler.step(jobs[0].id)
    await handler.started(jobs[2].id)  # a finished job frees its slot for the oldest pending one
    assert (await engine.get(jobs[0].id)).state is JobState.SUCCEEDED
    handler.step(jobs[1].id)
    handler.step(jobs[2].id)
    for job in jobs:
        done = await engine.wait(job.id, 5)
        assert done.state is JobState.SUCCEEDED
        assert done.spec == job.spec
        assert done.start_time is not None and done.finish_time is not None
        assert done.create_time <= done.start_time <= done.finish_time


async def test_full_queue_is_resource_exhausted(make_engine: EngineFactory) -> None:
    handler = SteppedHandler(1)
    engine = await make_engine(handler, max_concurrent=1, max_queued=2)
    running, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    await handler.started(running.id)
    queued = [(await engine.submit(JobKind.SCAN, {}, timeout_s=None))[0] for _ in range(2)]
    with pytest.raises(ResourceExhausted):
        await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    await engine.cancel(queued[0].id)  # a free queue slot is usable again
    await engine.submit(JobKind.SCAN, {}, timeout_s=None)


async def test_dedup_returns_the_active_job(make_engine: EngineFactory) -> None:
    handler = SteppedHandler(1)
    engine = await make_engine(handler, max_concurrent=1)
    first, existed = await engine.submit(JobKind.SCAN, {"path": "/a"}, timeout_s=None, dedup_key="/a")
    assert not existed
    again, existed = await engine.submit(JobKind.SCAN, {"path": "/a"}, timeout_s=None, dedup_key="/a")
    assert existed and again.id == first.id
    other, existed = await engine.submit(JobKind.SCAN, {"path": "/b"}, timeout_s=None, dedup_key="/b")
    assert not existed and other.id != first.id
    # Concurrent duplicates, while pending: still one job.
    results = await asyncio.gather(
        *(engine.submit(JobKind.SCAN, {"path": "/c"}, timeout_s=None, dedup_key="/c") for _ in range(5))
    )
    assert len({job.id for job, _ in results}) == 1
    assert sum(not existed for _, existed in results) == 1
    handler.step(first.id)
    assert (await engine.wait(first.id, 5)).state is JobState.SUCCEEDED
    fresh, existed = await engine.submit(JobKind.SCAN, {"path": "/a"}, timeout_s=None, dedup_key="/a")
    assert not existed and fresh.id != first.id  # once finished, the same key makes a new job


async def test_timeout_ends_timed_out_with_partial_result(make_engine: EngineFactory) -> None:
    handler = SteppedHandler(4)
    engine = await make_engine(handler, default_timeout_s=0.5)
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    assert job.timeout_s == 0.5
    watcher = Recorder(engine.watch(job.id))
    await handler.started(job.id)
    handler.step(job.id)  # one item of four, then the handler waits past the deadline
    final = (await watcher.done())[-1]
    assert final.state is JobState.TIMED_OUT
    assert final.result == {"probed": 1}
    assert final.progress.fraction == 0.25
    assert final.error is not None and final.error.code == 4 and "timeout" in final.error.message
    assert handler.cancelled == [job.id]
    assert await engine.get(job.id) == final


async def test_per_job_timeout_overrides_default(make_engine: EngineFactory) -> None:
    engine = await make_engine(SteppedHandler(1), default_timeout_s=60)
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=0.05)
    assert (await engine.wait(job.id, 5)).state is JobState.TIMED_OUT
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(InvalidArgument):
            await engine.submit(JobKind.SCAN, {}, timeout_s=bad)


async def test_handler_errors_end_failed_with_codes(make_engine: EngineFactory) -> None:
    domain = await make_engine(SteppedHandler(1, auto_delay_s=0, fail_with=PermissionDenied("outside roots")))
    job, _ = await domain.submit(JobKind.SCAN, {}, timeout_s=None)
    final = await domain.wait(job.id, 5)
    assert final.state is JobState.FAILED
    assert final.error is not None and (final.error.code, final.error.message) == (7, "outside roots")
    assert final.result == {"probed": 1}  # partial result kept
    assert final.progress.fraction < 1.0
    bug = await make_engine(SteppedHandler(1, auto_delay_s=0, fail_with=ZeroDivisionError("division by zero")))
    job, _ = await bug.submit(JobKind.SCAN, {}, timeout_s=None)
    final = await bug.wait(job.id, 5)
    assert final.state is JobState.FAILED
    assert final.error is not None and final.error.code == 13 and "ZeroDivisionError" in final.error.message
    # The engine is unharmed: the next job runs.
    job, _ = await bug.submit(JobKind.SCAN, {}, timeout_s=None)
    assert (await bug.wait(job.id, 5)).state is JobState.FAILED


async def test_handler_ignoring_cancellation_is_abandoned(
    make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "HANDLER_STOP_GRACE_S", 0.2)
    release = asyncio.Event()

    class Stubborn(SteppedHandler):
        async def run(self, ctx: JobContext) -> None:
            ctx.report(stage=Stage.PROBING, done=1, total=2)
            while not release.is_set():
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    continue  # a buggy handler that swallows cancellation

    engine = await make_engine(Stubborn())
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)

    async def running() -> bool:
        return (await engine.get(job.id)).progress.done == 1

    await eventually(running)
    await engine.cancel(job.id)
    assert (await engine.wait(job.id, 5)).state is JobState.CANCELLED
    release.set()


async def test_wait_returns_at_timeout_or_when_terminal(make_engine: EngineFactory) -> None:
    handler = SteppedHandler(1)
    engine = await make_engine(handler)
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    await handler.started(job.id)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    waited = await engine.wait(job.id, 0.2)
    assert waited.state is JobState.RUNNING and loop.time() - t0 >= 0.19
    assert (await engine.wait(job.id, 0)).state is JobState.RUNNING
    waiter = asyncio.create_task(engine.wait(job.id, 10))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    handler.step(job.id)
    assert (await waiter).state is JobState.SUCCEEDED
