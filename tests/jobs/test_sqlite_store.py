"""The SQLite job store: round trips and the write guards the engine relies on."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from reelscan.service.jobs.model import Job, JobError, JobKind, JobState, Progress, Stage, transition
from reelscan.service.jobs.sqlite_store import SqliteJobStore


def _job() -> Job:
    now = time.time()
    return Job(
        id="j1",
        kind=JobKind.SCAN,
        state=JobState.PENDING,
        spec={"path": "/m", "recursive": True, "extensions": ["mp4", "mkv"]},
        timeout_s=12.5,
        create_time=now,
        update_time=now,
        seq=1,
        dedup_key="/m",
    )


async def test_round_trip_of_every_field(tmp_path: Path) -> None:
    store = await SqliteJobStore.open(tmp_path / "db")
    try:
        job = _job()
        await store.insert(job)
        assert await store.get("j1") == job
        running = transition(job, JobState.RUNNING, now=time.time())
        running = dataclasses.replace(
            running,
            progress=Progress(0.5, Stage.PROBING, 5, 10, "a.mp4", 2.5, 2.0),
            result={"probed": 5, "failed": 1},
            cancel_requested=True,
        )
        assert await store.save(running)
        assert await store.get("j1") == running
        failed = transition(running, JobState.FAILED, now=time.time(), error=JobError(5, "gone"))
        assert await store.save(failed)
        assert await store.get("j1") == failed
        assert await store.get("nope") is None
    finally:
        await store.close()


async def test_late_writes_never_overwrite_newer_state(tmp_path: Path) -> None:
    store = await SqliteJobStore.open(tmp_path / "db")
    try:
        job = _job()
        await store.insert(job)
        running = transition(job, JobState.RUNNING, now=time.time())
        await store.save(running)
        newer = dataclasses.replace(running, seq=running.seq + 5, progress=Progress(0.8, Stage.PROBING, 8, 10))
        await store.checkpoint(newer)
        older = dataclasses.replace(running, seq=running.seq + 2, progress=Progress(0.3, Stage.PROBING, 3, 10))
        await store.checkpoint(older)  # lands late: ignored
        assert await store.get("j1") == newer
        done = transition(newer, JobState.SUCCEEDED, now=time.time())
        assert await store.save(done)
        await store.checkpoint(dataclasses.replace(newer, seq=done.seq + 1))  # after the end: ignored
        assert not await store.save(dataclasses.replace(newer, seq=done.seq + 2))  # cannot resurrect
        assert await store.get("j1") == done
        assert await store.delete("j1")
        assert not await store.delete("j1")
    finally:
        await store.close()


async def test_reopening_keeps_jobs(tmp_path: Path) -> None:
    store = await SqliteJobStore.open(tmp_path / "db")
    await store.insert(_job())
    await store.close()
    store = await SqliteJobStore.open(tmp_path / "db")
    try:
        assert [j.id for j in await store.list_active()] == ["j1"]
    finally:
        await store.close()
