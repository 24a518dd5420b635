"""Durability: after a clean restart or a crash no job is left RUNNING; interrupted jobs run again."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from reelscan.service.jobs.engine import MAX_CRASH_RECOVERIES
from reelscan.service.jobs.model import Job, JobKind, JobState, Progress, Stage
from tests.jobs.conftest import EngineFactory
from tests.jobs.handlers import SteppedHandler, eventually


async def test_clean_restart_with_jobs_in_every_state(make_engine: EngineFactory) -> None:
    handler = SteppedHandler(2)
    engine = await make_engine(handler, max_concurrent=1)
    ids: dict[str, str] = {}

    async def submit(name: str, timeout_s: float | None = None) -> str:
        ids[name] = (await engine.submit(JobKind.SCAN, {"name": name}, timeout_s=timeout_s))[0].id
        return ids[name]

    handler.step(await submit("succeeded"), 2)
    await engine.wait(ids["succeeded"], 5)
    await submit("timed_out", timeout_s=0.05)
    await engine.wait(ids["timed_out"], 5)
    await submit("cancelled")
    await handler.started(ids["cancelled"])
    await engine.cancel(ids["cancelled"])
    await engine.wait(ids["cancelled"], 5)
    handler.fail_with = RuntimeError("boom")
    handler.step(await submit("failed"), 2)
    await engine.wait(ids["failed"], 5)
    handler.fail_with = None
    await submit("running")
    await handler.started(ids["running"])
    handler.step(ids["running"])  # half done when the server stops
    await submit("pending")

    async def half_done() -> bool:
        return (await engine.get(ids["running"])).progress.fraction == 0.5

    await eventually(half_done)
    before = {name: await engine.get(job_id) for name, job_id in ids.items()}
    assert {name: job.state.name.lower() for name, job in before.items() if name != "running"} == {
        n: n for n in ids if n != "running"
    }
    await engine.close()
    assert handler.cancelled == [ids["timed_out"], ids["cancelled"], ids["running"]]

    # The store as the next server sees it: nothing RUNNING; the interrupted job is queued again.
    store = await make_engine.store()
    stored = {name: await store.get(job_id) for name, job_id in ids.items()}
    assert all(job is not None and job.state is not JobState.RUNNING for job in stored.values())
    assert stored["running"] is not None and stored["running"].state is JobState.PENDING
    assert stored["running"].progress.fraction == 0.5  # kept, so progress never goes backwards

    handler2 = SteppedHandler(2, auto_delay_s=0.01)
    engine2 = await make_engine(handler2, max_concurrent=1)
    for name in ("succeeded", "failed", "cancelled", "timed_out"):
        assert await engine2.get(ids[name]) == before[name], name
    for name in ("running", "pending"):
        final = await engine2.wait(ids[name], 5)
        assert final.state is JobState.SUCCEEDED and final.progress.fraction == 1.0
        assert final.seq > before[name].seq
    assert handler2.runs == [ids["running"], ids["pending"]]  # in their original order
    assert handler2.recovered == []  # a clean shutdown leaves nothing half done to repair


def _crashed_job(job_id: str, **changes: Any) -> Job:
    now = time.time()
    job = Job(
        id=job_id,
        kind=JobKind.SCAN,
        state=JobState.RUNNING,
        spec={"path": f"/media/{job_id}"},
        timeout_s=30.0,
        create_time=now - 10,
        update_time=now - 5,
        start_time=now - 9,
        seq=40,
        progress=Progress(fraction=0.4, stage=Stage.PROBING, done=4, total=10, current_item="a.mp4", rate=2.0),
        result={"probed": 4},
    )
    return dataclasses.replace(job, **changes)


async def test_crash_recovery_requeues_cancels_or_gives_up(make_engine: EngineFactory) -> None:
    store = await make_engine.store()
    # Rows as a server killed with -9 leaves them: RUNNING, with the last progress checkpoint.
    await store.insert(_crashed_job("interrupted"))
    await store.insert(_crashed_job("cancel-requested", cancel_requested=True))
    await store.insert(_crashed_job("crash-looping", recoveries=MAX_CRASH_RECOVERIES - 1))
    await store.insert(dataclasses.replace(_crashed_job("pending"), state=JobState.PENDING, start_time=None))
    handler = SteppedHandler(2, auto_delay_s=0.01)
    engine = await make_engine(handler)
    assert sorted(job_id for job_id, _ in handler.recovered) == ["cancel-requested", "crash-looping", "interrupted"]
    assert dict(handler.recovered)["interrupted"] == {"path": "/media/interrupted"}

    final = await engine.wait("interrupted", 5)
    assert final.state is JobState.SUCCEEDED and final.progress.fraction == 1.0
    assert final.recoveries == 1
    assert final.seq > 40
    cancelled = await engine.get("cancel-requested")
    assert cancelled.state is JobState.CANCELLED and cancelled.result == {"probed": 4}
    failed = await engine.get("crash-looping")
    assert failed.state is JobState.FAILED and failed.error is not None
    assert failed.error.code == 10 and "not run again" in failed.error.message
    assert (await engine.wait("pending", 5)).state is JobState.SUCCEEDED
    assert sorted(handler.runs) == ["interrupted", "pending"]


async def test_progress_is_checkpointed_and_a_crashed_server_is_recovered(make_engine: EngineFactory) -> None:
    """A server that dies mid-job leaves its last checkpoint; the next server picks the job up from there."""
    handler = SteppedHandler(4)
    dying = await make_engine(handler, checkpoint_interval_s=0.05)
    job, _ = await dying.submit(JobKind.SCAN, {"path": "/m"}, timeout_s=None)
    await handler.started(job.id)
    handler.step(job.id, 3)
    observer = await make_engine.store()

    async def checkpointed() -> bool:
        stored = await observer.get(job.id)
        return stored is not None and stored.progress.done == 3

    await eventually(checkpointed, what="progress checkpoint in the database")
    stored = await observer.get(job.id)
    assert stored is not None and stored.state is JobState.RUNNING
    assert stored.progress.fraction == 0.75 and stored.result == {"probed": 3}
    live_seq = (await dying.get(job.id)).seq

    # A new server on the same database while the old one is wedged: the RUNNING row is an interrupted job.
    handler2 = SteppedHandler(4, auto_delay_s=0.01)
    survivor = await make_engine(handler2)
    assert [job_id for job_id, _ in handler2.recovered] == [job.id]
    final = await survivor.wait(job.id, 5)
    assert final.state is JobState.SUCCEEDED and final.seq > live_seq
    # The dead server's late shutdown cannot overwrite the finished job.
    await dying.close()
    assert await observer.get(job.id) == final
