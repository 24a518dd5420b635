"""WatchJob semantics at the engine: snapshot first, coalescing, terminal delivered then end, watcher bookkeeping."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from reelscan.service.errors import NotFound, ResourceExhausted
from reelscan.service.jobs.engine import EngineClosed
from reelscan.service.jobs.model import JobKind, JobState
from tests.jobs.conftest import EngineFactory
from tests.jobs.handlers import Recorder, SteppedHandler, eventually


async def test_late_watcher_gets_current_snapshot_first(make_engine: EngineFactory) -> None:
    handler = SteppedHandler(4)
    engine = await make_engine(handler)
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    await handler.started(job.id)
    handler.step(job.id, 2)

    async def half_done() -> bool:
        return (await engine.get(job.id)).progress.done == 2

    await eventually(half_done)
    current = await engine.get(job.id)
    stream = engine.watch(job.id)
    first = await asyncio.wait_for(anext(stream), 1)
    assert first == current  # the snapshot, at once, without any further change
    assert first.state is JobState.RUNNING and first.progress.fraction == 0.5
    handler.step(job.id, 2)
    rest = [j async for j in stream]
    assert rest[-1].state is JobState.SUCCEEDED
    assert all(j.seq > first.seq for j in rest)


async def test_watching_finished_job_yields_terminal_snapshot_and_ends(make_engine: EngineFactory) -> None:
    engine = await make_engine(SteppedHandler(2, auto_delay_s=0))
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    final = await engine.wait(job.id, 5)
    assert final.state is JobState.SUCCEEDED
    seen = await Recorder(engine.watch(job.id)).done(2)
    assert seen == [final]
    assert engine.watcher_count(job.id) == 0


async def test_watch_unknown_job_is_not_found(make_engine: EngineFactory) -> None:
    engine = await make_engine(SteppedHandler())
    with pytest.raises(NotFound):
        await anext(engine.watch("no-such-job"))
    assert engine.watcher_count("no-such-job") == 0


async def test_watcher_that_never_reads_does_not_delay_the_job(make_engine: EngineFactory) -> None:
    engine = await make_engine(SteppedHandler(50, auto_delay_s=0.005))
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    stuck = engine.watch(job.id)
    first = await anext(stuck)  # registered, then never read again while the job runs
    reader = Recorder(engine.watch(job.id))
    final = await engine.wait(job.id, 10)
    assert final.state is JobState.SUCCEEDED
    assert (await reader.done())[-1] == final
    # The stuck watcher held one slot, not a backlog: its next read is the terminal snapshot itself.
    assert first.seq < final.seq
    assert await anext(stuck) == final
    with pytest.raises(StopAsyncIteration):
        await anext(stuck)
    assert engine.watcher_count(job.id) == 0


async def test_disconnecting_watcher_is_unregistered(make_engine: EngineFactory) -> None:
    handler = SteppedHandler(2)
    engine = await make_engine(handler)
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    watchers = [Recorder(engine.watch(job.id)) for _ in range(3)]
    await eventually(lambda: engine.watcher_count(job.id) == 3)
    watchers[0].task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watchers[0].task  # the cancellation propagates, it is not swallowed
    assert engine.watcher_count(job.id) == 2
    for w in watchers[1:]:
        w.task.cancel()
    await asyncio.gather(*(w.task for w in watchers[1:]), return_exceptions=True)
    assert engine.watcher_count(job.id) == 0
    # A consumer that stops early and closes its stream is unregistered too.
    async with contextlib.aclosing(engine.watch(job.id)) as stream:
        await anext(stream)
        assert engine.watcher_count(job.id) == 1
    assert engine.watcher_count(job.id) == 0
    handler.step(job.id, 2)
    assert (await engine.wait(job.id, 5)).state is JobState.SUCCEEDED


async def test_watcher_limit_is_resource_exhausted(make_engine: EngineFactory) -> None:
    handler = SteppedHandler(1)
    engine = await make_engine(handler, max_watchers=2)
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    other, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    a, b = engine.watch(job.id), engine.watch(other.id)
    await anext(a)
    await anext(b)
    with pytest.raises(ResourceExhausted):
        await anext(engine.watch(job.id))
    await a.aclose()
    c = engine.watch(job.id)
    assert (await anext(c)).id == job.id  # a freed slot can be used again
    await b.aclose()
    await c.aclose()


async def test_close_ends_watch_streams(make_engine: EngineFactory) -> None:
    handler = SteppedHandler(3)
    engine = await make_engine(handler)
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    watcher = Recorder(engine.watch(job.id))
    await handler.started(job.id)
    await eventually(lambda: engine.watcher_count(job.id) == 1)
    await engine.close()
    with pytest.raises(EngineClosed):
        await watcher.done()
    with pytest.raises(EngineClosed):
        await engine.get(job.id)
