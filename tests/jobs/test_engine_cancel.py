"""CancelJob and DeleteJob semantics at the engine."""

from __future__ import annotations

import pytest

from reelscan.service.errors import FailedPrecondition, NotFound
from reelscan.service.jobs.model import JobKind, JobState, Stage
from tests.jobs.conftest import EngineFactory
from tests.jobs.handlers import Recorder, SteppedHandler, eventually


async def test_cancel_pending_ends_cancelled_at_once(make_engine: EngineFactory) -> None:
    handler = SteppedHandler(1)
    engine = await make_engine(handler, max_concurrent=1)
    running, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    pending, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    watcher = Recorder(engine.watch(pending.id))
    await handler.started(running.id)
    assert (await engine.get(pending.id)).state is JobState.PENDING
    cancelled = await engine.cancel(pending.id)
    assert cancelled.state is JobState.CANCELLED and cancelled.cancel_requested
    assert cancelled.finish_time is not None and cancelled.start_time is None
    assert (await engine.get(pending.id)) == cancelled
    seen = await watcher.done()
    assert [j.state for j in seen] == [JobState.PENDING, JobState.CANCELLED]
    handler.step(running.id)
    assert (await engine.wait(running.id, 5)).state is JobState.SUCCEEDED
    assert handler.runs == [running.id]  # the cancelled job never ran


async def test_cancel_running_stops_work_keeps_partial_result(make_engine: EngineFactory) -> None:
    handler = SteppedHandler(4)
    engine = await make_engine(handler)
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    watchers = [Recorder(engine.watch(job.id)), Recorder(engine.watch(job.id))]
    await handler.started(job.id)
    handler.step(job.id, 2)

    async def two_done() -> bool:
        return (await engine.get(job.id)).result == {"probed": 2}

    await eventually(two_done)
    response = await engine.cancel(job.id)
    # Returned at once: still running while the handler stops, with the request recorded.
    assert response.state is JobState.RUNNING and response.cancel_requested
    for w in watchers:
        seen = await w.done()
        final = seen[-1]
        assert final.state is JobState.CANCELLED
        assert final.cancel_requested
        assert final.result == {"probed": 2}
        assert final.progress.fraction == 0.5 and final.progress.stage is Stage.DONE
        assert final.error is None
    assert handler.cancelled == [job.id]
    assert handler.finished == []
    stored = await engine.get(job.id)
    assert stored.state is JobState.CANCELLED and stored.result == {"probed": 2}


async def test_cancel_twice_is_a_noop(make_engine: EngineFactory) -> None:
    handler = SteppedHandler(2)
    engine = await make_engine(handler)
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    await handler.started(job.id)
    first = await engine.cancel(job.id)
    second = await engine.cancel(job.id)
    assert second.cancel_requested and second.seq >= first.seq
    final = await engine.wait(job.id, 5)
    assert final.state is JobState.CANCELLED
    assert await engine.cancel(job.id) == final  # cancelling a cancelled job returns it unchanged
    assert handler.cancelled == [job.id]


@pytest.mark.parametrize("fail", [False, True])
async def test_cancel_finished_job_is_failed_precondition(make_engine: EngineFactory, fail: bool) -> None:
    engine = await make_engine(SteppedHandler(1, auto_delay_s=0, fail_with=RuntimeError("boom") if fail else None))
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    final = await engine.wait(job.id, 5)
    assert final.state is (JobState.FAILED if fail else JobState.SUCCEEDED)
    with pytest.raises(FailedPrecondition):
        await engine.cancel(job.id)
    assert await engine.get(job.id) == final


async def test_cancel_timed_out_job_is_failed_precondition(make_engine: EngineFactory) -> None:
    engine = await make_engine(SteppedHandler(1))
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=0.05)
    assert (await engine.wait(job.id, 5)).state is JobState.TIMED_OUT
    with pytest.raises(FailedPrecondition):
        await engine.cancel(job.id)


async def test_unknown_ids_are_not_found(make_engine: EngineFactory) -> None:
    engine = await make_engine(SteppedHandler())
    for call in (engine.get, engine.cancel, engine.delete, lambda i: engine.wait(i, 0.01)):
        with pytest.raises(NotFound):
            await call("0123456789abcdef")


async def test_delete_only_terminal_jobs(make_engine: EngineFactory) -> None:
    handler = SteppedHandler(1)
    engine = await make_engine(handler, max_concurrent=1)
    running, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    pending, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    await handler.started(running.id)
    for job_id in (running.id, pending.id):
        with pytest.raises(FailedPrecondition):
            await engine.delete(job_id)
    handler.step(running.id)
    await engine.wait(running.id, 5)
    await engine.delete(running.id)
    assert handler.deleted == [running.id]
    with pytest.raises(NotFound):
        await engine.get(running.id)
    with pytest.raises(NotFound):
        await engine.delete(running.id)
    jobs, _ = await engine.list(states=(), kinds=(), page_size=10, page_token="")
    assert [j.id for j in jobs] == [pending.id]
