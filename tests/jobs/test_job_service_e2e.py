"""JobService end to end: real scan jobs over generated video files, on the real server process, over a real
channel. `--probe-delay` slows each probe down so that progress is observable between files."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

from reelscan.v1 import job_pb2, job_service_pb2, scan_service_pb2
from tests.helpers.databases import BACKENDS, new_database
from tests.helpers.server import ServerProcess
from tests.helpers.stubs import Stubs
from tests.media import copy_clip, make_clip

PROBE_DELAY_S = 0.15
_ACTIVE = (job_pb2.JOB_STATE_PENDING, job_pb2.JOB_STATE_RUNNING)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "source.mp4").path


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Path:
    return tmp_path_factory.mktemp(f"media-{backend}")


@pytest.fixture(scope="module")
def slow_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, media: Path, backend: str
) -> Iterator[ServerProcess]:
    """One server per backend for the module: one probe worker, each probe slowed down, two jobs at a time."""
    args = ["--probe-delay", str(PROBE_DELAY_S), "--probe-workers", "1", "--max-concurrent-jobs", "2"]
    db = new_database(backend, request, tmp_path_factory.mktemp("db"))
    with ServerProcess(db, allow_roots=[media], extra_args=args) as proc:
        yield proc


class Api(Stubs):
    async def scan(self, path: Path) -> job_pb2.Job:
        response: scan_service_pb2.StartScanResponse = await self.scans.StartScan(
            scan_service_pb2.StartScanRequest(path=str(path)), timeout=10
        )
        return response.job

    async def get_when(self, job_id: str, probed_at_least: int) -> job_pb2.Job:
        """Polls GetJob until the job has probed that many files."""
        async with asyncio.timeout(30):
            for _ in range(100_000):
                job = await self.get(job_id)
                if job.result.probed >= probed_at_least or job.state not in _ACTIVE:
                    return job
                await asyncio.sleep(0.02)
        raise AssertionError("unreachable")

    async def get(self, job_id: str) -> job_pb2.Job:
        response: job_service_pb2.GetJobResponse = await self.jobs.GetJob(
            job_service_pb2.GetJobRequest(job_id=job_id), timeout=10
        )
        return response.job

    async def wait(self, job_id: str, seconds: float = 30) -> job_pb2.Job:
        response: job_service_pb2.WaitJobResponse = await self.jobs.WaitJob(
            job_service_pb2.WaitJobRequest(job_id=job_id, timeout=duration_pb2.Duration(seconds=int(seconds))),
            timeout=seconds + 5,
        )
        assert response.done, response.job
        return response.job

    def watch(self, job_id: str) -> AsyncIterator[job_pb2.JobUpdate]:
        call: AsyncIterator[job_pb2.JobUpdate] = self.jobs.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id))
        return call


@pytest.fixture
async def api(slow_server: ServerProcess) -> AsyncIterator[Api]:
    async with grpc.aio.insecure_channel(slow_server.address) as channel:
        yield Api(channel)


def make_tree(root: Path, clip: Path, count: int) -> Path:
    root.mkdir(parents=True)
    for i in range(count):
        copy_clip(clip, root / f"clip-{i:03d}.mp4")
    return root


async def collect(stream: AsyncIterator[job_pb2.JobUpdate]) -> list[job_pb2.JobUpdate]:
    async with asyncio.timeout(60):
        return [update async for update in stream]


def assert_real_progress(updates: list[job_pb2.JobUpdate], *, min_intermediate: int) -> None:
    seqs = [u.seq for u in updates]
    assert seqs == sorted(set(seqs)), f"seq not strictly increasing: {seqs}"
    progress = [u.progress for u in updates]
    assert progress == sorted(progress), f"progress went backwards: {progress}"
    intermediate = sorted({p for p in progress if 0 < p < 1})
    assert len(intermediate) >= min_intermediate, f"too few intermediate values: {progress}"
    final = updates[-1]
    assert final.state == job_pb2.JOB_STATE_SUCCEEDED and final.progress == 1.0


async def test_scan_progress_seen_by_two_watchers_and_polling(api: Api, media: Path, clip: Path) -> None:
    files = 8
    root = make_tree(media / "progress", clip, files)
    job = await api.scan(root)
    watchers = [asyncio.create_task(collect(api.watch(job.id))) for _ in range(2)]
    polled: list[job_pb2.Job] = []
    while not polled or polled[-1].state in _ACTIVE:
        polled.append(await api.get(job.id))
        await asyncio.sleep(0.03)
    for task in watchers:
        updates = await task
        assert_real_progress(updates, min_intermediate=3)
        assert updates[0].job_id == job.id
        assert any(u.progress_detail.current_item.endswith(".mp4") for u in updates)
        assert any(u.job.watcher_count == 2 for u in updates)
        probing = [u for u in updates if u.progress_detail.stage == job_pb2.JOB_STAGE_PROBING]
        assert probing and max(u.progress_detail.items_total for u in probing) == files
        final = updates[-1]
        assert final.result.discovered == files and final.result.probed == files and final.result.new == files
    fractions = [j.progress for j in polled]
    assert fractions == sorted(fractions)
    assert len({f for f in fractions if 0 < f < 1}) >= 2, fractions
    assert all(j.state != job_pb2.JOB_STATE_RUNNING or j.progress < 1 for j in polled)
    assert polled[-1].state == job_pb2.JOB_STATE_SUCCEEDED and polled[-1].progress == 1.0


async def test_cancel_running_scan_delivers_cancelled(api: Api, media: Path, clip: Path) -> None:
    files = 40
    root = make_tree(media / "cancel", clip, files)
    job = await api.scan(root)
    watchers = [asyncio.create_task(collect(api.watch(job.id))) for _ in range(2)]
    current = await api.get_when(job.id, 2)
    assert current.state == job_pb2.JOB_STATE_RUNNING
    response = await api.jobs.CancelJob(job_service_pb2.CancelJobRequest(job_id=job.id), timeout=10)
    assert response.job.cancel_requested
    for task in watchers:
        final = (await task)[-1]
        assert final.state == job_pb2.JOB_STATE_CANCELLED
        assert 2 <= final.result.probed < files  # stopped early, keeping what was done
        assert 0 < final.progress < 1
    again = await api.jobs.CancelJob(job_service_pb2.CancelJobRequest(job_id=job.id), timeout=10)
    assert again.job.state == job_pb2.JOB_STATE_CANCELLED


async def test_cancel_pending_and_finished_scans(api: Api, media: Path, clip: Path) -> None:
    roots = [make_tree(media / f"queue-{i}", clip, 6) for i in range(3)]
    jobs = [await api.scan(root) for root in roots]  # two run, the third waits
    assert jobs[2].state == job_pb2.JOB_STATE_PENDING
    response = await api.jobs.CancelJob(job_service_pb2.CancelJobRequest(job_id=jobs[2].id), timeout=10)
    assert response.job.state == job_pb2.JOB_STATE_CANCELLED
    done = await api.wait(jobs[0].id)
    assert done.state == job_pb2.JOB_STATE_SUCCEEDED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.jobs.CancelJob(job_service_pb2.CancelJobRequest(job_id=jobs[0].id), timeout=10)
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    await api.wait(jobs[1].id)


async def test_unknown_ids_are_not_found_on_every_rpc(api: Api) -> None:
    unknown = "ffffffffffffffffffffffffffffffff"
    for call in (
        api.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=unknown), timeout=10),
        api.jobs.CancelJob(job_service_pb2.CancelJobRequest(job_id=unknown), timeout=10),
        api.jobs.DeleteJob(job_service_pb2.DeleteJobRequest(job_id=unknown), timeout=10),
        api.jobs.WaitJob(job_service_pb2.WaitJobRequest(job_id=unknown), timeout=10),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(api.watch(unknown))
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


async def test_invalid_arguments(api: Api) -> None:
    for call in (
        api.jobs.GetJob(job_service_pb2.GetJobRequest(), timeout=10),
        api.jobs.CancelJob(job_service_pb2.CancelJobRequest(), timeout=10),
        api.jobs.DeleteJob(job_service_pb2.DeleteJobRequest(), timeout=10),
        api.jobs.WaitJob(job_service_pb2.WaitJobRequest(), timeout=10),
        api.jobs.ListJobs(job_service_pb2.ListJobsRequest(page_size=-5), timeout=10),
        api.jobs.ListJobs(job_service_pb2.ListJobsRequest(page_token="not-a-token"), timeout=10),
        api.jobs.ListJobs(job_service_pb2.ListJobsRequest(states=[job_pb2.JOB_STATE_UNSPECIFIED]), timeout=10),
        api.jobs.ListJobs(job_service_pb2.ListJobsRequest(kinds=[job_pb2.JOB_KIND_UNSPECIFIED]), timeout=10),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(api.watch(""))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_pagination_over_the_api(api: Api, media: Path, clip: Path) -> None:
    roots = [make_tree(media / f"page-{i}", clip, 1) for i in range(5)]
    ids = []
    for root in roots:
        job = await api.scan(root)
        ids.append(job.id)
        await api.wait(job.id)
    request = job_service_pb2.ListJobsRequest(states=[job_pb2.JOB_STATE_SUCCEEDED], page_size=2)
    seen: list[str] = []
    while True:
        response = await api.jobs.ListJobs(request, timeout=10)
        seen += [j.id for j in response.jobs]
        if not response.next_page_token:
            break
        request.page_token = response.next_page_token
    assert len(seen) == len(set(seen))
    assert [i for i in seen if i in ids] == ids[::-1]  # newest first, each once (other tests' jobs around them)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        first = await api.jobs.ListJobs(job_service_pb2.ListJobsRequest(page_size=1), timeout=10)
        await api.jobs.ListJobs(
            job_service_pb2.ListJobsRequest(
                page_size=1, page_token=first.next_page_token, states=[job_pb2.JOB_STATE_SUCCEEDED]
            ),
            timeout=10,
        )
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_wait_job_times_out_while_running(api: Api, media: Path, clip: Path) -> None:
    root = make_tree(media / "wait", clip, 10)
    job = await api.scan(root)
    response = await api.jobs.WaitJob(
        job_service_pb2.WaitJobRequest(job_id=job.id, timeout=duration_pb2.Duration(nanos=200_000_000)), timeout=10
    )
    assert not response.done
    assert response.job.state in (job_pb2.JOB_STATE_PENDING, job_pb2.JOB_STATE_RUNNING)
    final = await api.wait(job.id)
    assert final.state == job_pb2.JOB_STATE_SUCCEEDED and final.progress == 1.0


@pytest.mark.parametrize("kill", [True, False], ids=["kill-9", "sigterm"])
async def test_interrupted_scan_runs_again_after_restart(tmp_path: Path, clip: Path, kill: bool) -> None:
    media = tmp_path / "media"
    root = make_tree(media / "big", clip, 12)
    args = ["--probe-delay", "0.2", "--probe-workers", "1"]
    with ServerProcess(tmp_path / "reelscan.db", allow_roots=[media], extra_args=args) as server:
        async with grpc.aio.insecure_channel(server.address) as channel:
            api = Api(channel)
            job = await api.scan(root)
            before = await api.get_when(job.id, 3)
            assert before.state == job_pb2.JOB_STATE_RUNNING
            if kill:
                # Progress is checkpointed about once a second, so a crash loses at most the last second of it:
                # wait that long for what we saw to be on disk.
                await asyncio.sleep(1.5)
        await asyncio.to_thread(server.restart, kill=kill)
        async with grpc.aio.insecure_channel(server.address) as channel:
            api = Api(channel)
            after = await api.get(job.id)
            assert after.state in (job_pb2.JOB_STATE_PENDING, job_pb2.JOB_STATE_RUNNING)
            assert after.seq > before.seq and after.progress >= before.progress
            final = await api.wait(job.id)
            assert final.state == job_pb2.JOB_STATE_SUCCEEDED and final.progress == 1.0
            assert final.result.discovered == 12
