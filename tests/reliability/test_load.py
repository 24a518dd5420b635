"""Load: many StartScans at once on different roots, beyond a deliberately small queue limit, while hundreds of
watchers follow the jobs and pollers hammer GetJob and ListVideos.

The only errors allowed are the deliberate RESOURCE_EXHAUSTED answers of a full queue (the submitter backs off and
tries again); every accepted job must reach a terminal state (SUCCEEDED, here), every watcher must see a clean
stream ending in it, and the server's memory must stay bounded.

This test found that job-store writes failed with "database is locked" under concurrent reads (StartScan INTERNAL,
jobs FAILED "internal engine error", jobs whose end was never stored showing RUNNING forever, watchers of them
hanging); test_job_store_writes_survive_concurrent_reads reproduces that reliably and guards the fix.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

from reelscan.v1 import (
    job_pb2,
    job_service_pb2,
    library_pb2,
    scan_service_pb2,
)
from tests.helpers.server import ServerProcess
from tests.helpers.stubs import Stubs
from tests.reliability.support import Client, record, rss_bytes

FILES_PER_ROOT = 20
MAX_QUEUED = 3
MAX_CONCURRENT = 2
CHANNELS = 4
RSS_BOUND_MB = 150  # growth over the idle server; the measured figures are reported by the run
WATCH_GRACE_S = 10.0  # how long watchers may lag behind the last job's end
LOCKED = "database is locked"


@dataclass
class Problem:
    kind: str  # "start", "watch-error", "watch-hung", "watch-stream", "job-end", "poll"
    subject: str  # root or job id
    detail: str


@dataclass
class Tally:
    accepted: dict[str, str] = field(default_factory=dict)  # root -> job id
    rejected: int = 0  # deliberate RESOURCE_EXHAUSTED
    problems: list[Problem] = field(default_factory=list)
    stale: set[str] = field(default_factory=set)  # jobs WaitJob reports not done although their work is over
    updates: int = 0
    watches: int = 0
    polls: collections.Counter[str] = field(default_factory=collections.Counter)
    rss: list[int] = field(default_factory=list)


async def submit(
    stubs: Stubs, root: Path, tally: Tally, rng: random.Random, deadline: float, first: asyncio.Event
) -> None:
    """StartScan until accepted; a full queue is the only acceptable refusal."""
    while time.monotonic() < deadline:
        try:
            response = await stubs.scans.StartScan(scan_service_pb2.StartScanRequest(path=str(root)), timeout=10)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                tally.rejected += 1
                await asyncio.sleep(rng.uniform(0.05, 0.3))
                continue
            tally.problems.append(Problem("start", root.name, f"{error.code().name} {error.details()}"))
            await asyncio.sleep(rng.uniform(0.05, 0.3))
            continue  # try again: the root must be scanned in the end
        assert not response.existing
        tally.accepted[str(root)] = response.job.id
        first.set()
        return
    tally.problems.append(Problem("start", root.name, "never accepted"))


async def watch(stubs: Stubs, tally: Tally, rng: random.Random, first: asyncio.Event) -> None:
    """Waits a random while, then follows a random accepted job to its end."""
    await asyncio.sleep(rng.uniform(0, 2.0))
    await first.wait()
    job_id = rng.choice(list(tally.accepted.values()))
    updates: list[job_pb2.JobUpdate] = []
    try:
        async for update in stubs.jobs.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id)):
            updates.append(update)
    except grpc.aio.AioRpcError as error:
        tally.problems.append(Problem("watch-error", job_id, f"{error.code().name} {error.details()}"))
        return
    except asyncio.CancelledError:
        last = job_pb2.JobState.Name(updates[-1].state) if updates else "nothing"
        tally.problems.append(Problem("watch-hung", job_id, f"still open, last saw {last}"))
        raise
    tally.watches += 1
    tally.updates += len(updates)
    seqs = [u.seq for u in updates]
    progress = [u.progress for u in updates]
    if not updates or seqs != sorted(set(seqs)) or progress != sorted(progress):
        tally.problems.append(Problem("watch-stream", job_id, f"seq={seqs} progress={progress}"))
    elif updates[-1].state != job_pb2.JOB_STATE_SUCCEEDED:
        state = job_pb2.JobState.Name(updates[-1].state)
        tally.problems.append(Problem("job-end", job_id, f"{state} {updates[-1].error.message}"))


async def poll(stubs: Stubs, tally: Tally, rng: random.Random, done: asyncio.Event) -> None:
    """GetJob on random jobs and pages of ListVideos, back to back, until the load is over."""
    while not done.is_set():
        try:
            if tally.accepted and rng.random() < 0.6:
                job_id = rng.choice(list(tally.accepted.values()))
                await stubs.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id), timeout=10)
                tally.polls["GetJob"] += 1
            else:
                token = ""
                for _ in range(3):
                    request = library_pb2.ListVideosRequest(page_size=100, page_token=token)
                    response = await stubs.library.ListVideos(request, timeout=10)
                    tally.polls["ListVideos"] += 1
                    token = response.next_page_token
                    if not token:
                        break
        except grpc.aio.AioRpcError as error:
            tally.problems.append(Problem("poll", "", f"{error.code().name} {error.details()}"))
            return
        await asyncio.sleep(0.005)


async def sample_rss(server: ServerProcess, tally: Tally, done: asyncio.Event) -> None:
    while not done.is_set():
        tally.rss.append(rss_bytes(server))
        await asyncio.sleep(0.1)


async def run_load(server: ServerProcess, roots: list[Path], watchers: int, pollers: int) -> Tally:
    tally = Tally()
    rng = random.Random(7)
    channels = [grpc.aio.insecure_channel(server.address) for _ in range(CHANNELS)]
    stubs = [Stubs(c) for c in channels]
    done = asyncio.Event()
    first = asyncio.Event()  # set when the first scan is accepted
    try:
        background = [
            asyncio.create_task(sample_rss(server, tally, done)),
            *(asyncio.create_task(poll(stubs[i % CHANNELS], tally, rng, done)) for i in range(pollers)),
        ]
        deadline = time.monotonic() + 120
        submitters = [
            asyncio.create_task(submit(stubs[i % CHANNELS], root, tally, rng, deadline, first))
            for i, root in enumerate(roots)
        ]
        watch_tasks = [asyncio.create_task(watch(stubs[i % CHANNELS], tally, rng, first)) for i in range(watchers)]
        await asyncio.gather(*submitters)
        # Every accepted job must end.
        for job_id in tally.accepted.values():
            request = job_service_pb2.WaitJobRequest(job_id=job_id, timeout=duration_pb2.Duration(seconds=120))
            response = await stubs[0].jobs.WaitJob(request, timeout=125)
            if not response.done:
                tally.stale.add(job_id)
                state = job_pb2.JobState.Name(response.job.state)
                tally.problems.append(Problem("job-end", job_id, f"WaitJob returned {state}, not done"))
        # Watchers may lag a little behind; one still open after that is hung.
        _, hung = await asyncio.wait(watch_tasks, timeout=WATCH_GRACE_S)
        for task in hung:
            task.cancel()
        await asyncio.gather(*hung, return_exceptions=True)
        done.set()
        await asyncio.gather(*background)
    finally:
        done.set()
        for channel in channels:
            await channel.close()
    return tally


def run_scenario(tmp_path: Path, clip: Path, roots_count: int, watchers: int, pollers: int) -> None:
    media = tmp_path / "media"
    roots = []
    for r in range(roots_count):
        root = media / f"root{r:02d}"
        root.mkdir(parents=True)
        for i in range(FILES_PER_ROOT):
            os.link(clip, root / f"clip{i:02d}.mp4")
        roots.append(root)
    args = ["--max-queued-jobs", str(MAX_QUEUED), "--max-concurrent-jobs", str(MAX_CONCURRENT)]
    args += ["--probe-workers", "2", "--probe-delay", "0.02"]
    with ServerProcess(tmp_path / "reelscan.db", allow_roots=[media], extra_args=args) as server:
        with Client(server.address) as client:
            client.list_jobs()  # warm the server up before measuring its idle memory
            idle = rss_bytes(server)
        started = time.monotonic()
        tally = asyncio.run(run_load(server, roots, watchers, pollers))
        elapsed = time.monotonic() - started
        with Client(server.address) as client:
            assert client.serving()
            videos = client.videos()
            jobs = client.list_jobs()
        after = rss_bytes(server)

    assert not tally.problems, tally.problems[:10]
    assert server.log.count(LOCKED) == 0
    assert len(tally.accepted) == roots_count, "every root was scanned in the end"
    assert tally.rejected > 0, "the queue limit was never reached: the test did not load the server"
    assert tally.watches == watchers
    assert len(videos) == roots_count * FILES_PER_ROOT
    assert {j.id for j in jobs} == set(tally.accepted.values())
    assert all(j.state == job_pb2.JOB_STATE_SUCCEEDED for j in jobs)
    peak = max(tally.rss)
    assert peak - idle < RSS_BOUND_MB * 2**20, f"server RSS grew {(peak - idle) / 2**20:.0f} MB under load"

    label = f"load ({roots_count} roots, {watchers} watchers, {pollers} pollers)"
    record(f"{label}: time (s)", round(elapsed, 1))
    record(f"{label}: deliberate RESOURCE_EXHAUSTED (queue of {MAX_QUEUED})", tally.rejected)
    record(f"{label}: updates received by watchers", tally.updates)
    record(f"{label}: polls", dict(tally.polls))
    record(
        f"{label}: server RSS idle / peak / after (MB)",
        f"{idle / 2**20:.1f} / {peak / 2**20:.1f} / {after / 2**20:.1f}",
    )


def test_concurrent_scans_watchers_and_pollers(tmp_path: Path, clips: dict[str, Path]) -> None:
    run_scenario(tmp_path, clips["mp4"], roots_count=10, watchers=200, pollers=8)


@pytest.mark.slow
def test_fifty_scans_a_thousand_watchers(tmp_path: Path, clips: dict[str, Path]) -> None:
    run_scenario(tmp_path, clips["mp4"], roots_count=50, watchers=1000, pollers=16)


def test_job_store_writes_survive_concurrent_reads(tmp_path: Path, clips: dict[str, Path]) -> None:
    """Regression test: the job store shared one connection between reads and writes and its reads were two calls
    (execute, then fetch); a write queued in between ran inside the open read transaction, where SQLite cannot wait
    for the library writer's lock, and failed at once with 'database is locked' (StartScan INTERNAL, jobs FAILED or
    left RUNNING/PENDING forever). Before the fix this failed on every run, with 4-19 failed writes."""
    media = tmp_path / "media"
    for r in range(40):
        (media / f"r{r:02d}").mkdir(parents=True)
        for i in range(30):
            os.link(clips["mp4"], media / f"r{r:02d}" / f"c{i:02d}.mp4")

    async def scenario(address: str) -> tuple[int, list[job_pb2.Job]]:
        async with grpc.aio.insecure_channel(address) as channel:
            stubs = Stubs(channel)
            request = scan_service_pb2.StartScanRequest(path=str(media / "r00"))
            finished = (await stubs.scans.StartScan(request, timeout=10)).job.id
            await stubs.jobs.WaitJob(job_service_pb2.WaitJobRequest(job_id=finished), timeout=60)
            stop = asyncio.Event()

            async def reader() -> None:  # reads that go to the store: a finished job, a page of jobs
                while not stop.is_set():
                    await stubs.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=finished), timeout=10)
                    await stubs.jobs.ListJobs(job_service_pb2.ListJobsRequest(page_size=5), timeout=10)

            readers = [asyncio.create_task(reader()) for _ in range(10)]
            failed_starts = 0
            ids = []
            for r in range(1, 40):
                try:
                    request = scan_service_pb2.StartScanRequest(path=str(media / f"r{r:02d}"))
                    ids.append((await stubs.scans.StartScan(request, timeout=10)).job.id)
                except grpc.aio.AioRpcError:
                    failed_starts += 1
            for job_id in ids:
                request = job_service_pb2.WaitJobRequest(job_id=job_id, timeout=duration_pb2.Duration(seconds=60))
                await stubs.jobs.WaitJob(request, timeout=65)
            stop.set()
            await asyncio.gather(*readers)
            response = await stubs.jobs.ListJobs(job_service_pb2.ListJobsRequest(page_size=1000), timeout=10)
            return failed_starts, list(response.jobs)

    args = ["--max-concurrent-jobs", "4"]
    with ServerProcess(tmp_path / "reelscan.db", allow_roots=[media], extra_args=args) as server:
        failed_starts, jobs = asyncio.run(scenario(server.address))
    not_succeeded = [(j.id[:8], job_pb2.JobState.Name(j.state), j.error.message) for j in jobs if j.state != 3]
    assert server.log.count(LOCKED) == 0, f"{server.log.count(LOCKED)} job store writes failed: {LOCKED}"
    assert failed_starts == 0
    assert not not_succeeded, not_succeeded
