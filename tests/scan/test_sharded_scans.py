"""Sharded scans on one server (SQLite, and PostgreSQL with one replica): the same code path every replica runs.

A real server process with small shards (`--shard-size`), real clips (hard links of one clip, plus broken files),
real channels. A sharded scan must be indistinguishable from an unsharded one in what it stores and counts; its
parent is what users see (progress, result, errors), its shards are jobs listed by parent only.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

from reelscan.v1 import job_pb2, job_service_pb2, library_pb2, scan_service_pb2
from tests.helpers.databases import BACKENDS, new_database
from tests.helpers.polling import poll
from tests.helpers.server import ServerProcess
from tests.helpers.stubs import Stubs
from tests.media import make_clip, make_zero_byte

TERMINAL = (
    job_pb2.JOB_STATE_SUCCEEDED,
    job_pb2.JOB_STATE_FAILED,
    job_pb2.JOB_STATE_CANCELLED,
    job_pb2.JOB_STATE_TIMED_OUT,
)
SHARD_SIZE = 20
# Fields of a Video that depend on when or by which job it was probed, not on the file.
UNSTABLE_VIDEO_FIELDS = ("id", "probe_time", "create_time")


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Path:
    return tmp_path_factory.mktemp(f"sharded-{backend}")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("shard-clip") / "source.mp4").path


def make_tree(root: Path, clip: Path, dirs: dict[str, int], broken: int = 0) -> Path:
    """Hard links of `clip`: `dirs` maps a sub-directory ("" for the root itself) to its file count; `broken`
    zero-byte files spread over the tree (they fail to probe: per-file errors)."""
    for sub, count in dirs.items():
        directory = root / sub if sub else root
        directory.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            os.link(clip, directory / f"clip {i:03d}.mp4")
    for i in range(broken):
        make_zero_byte(root / list(dirs)[i % len(dirs)] / f"broken {i}.mp4")
    return root


def start_server(
    request: pytest.FixtureRequest, directory: Path, backend: str, media: Path, *extra: str
) -> ServerProcess:
    db = new_database(backend, request, directory)
    args = ["--shard-size", str(SHARD_SIZE), "--probe-workers", "2", "--max-concurrent-jobs", "2", *extra]
    return ServerProcess(db, allow_roots=[media], extra_args=args)  # a context manager: starts and stops it


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, backend: str, media: Path
) -> Iterator[ServerProcess]:
    with start_server(request, tmp_path_factory.mktemp("db"), backend, media, "--probe-delay", "0.03") as proc:
        yield proc


class Api(Stubs):
    async def start(self, path: Path, **fields: object) -> job_pb2.Job:
        request = scan_service_pb2.StartScanRequest(path=str(path), **fields)  # type: ignore[arg-type]
        response: scan_service_pb2.StartScanResponse = await self.scans.StartScan(request, timeout=10)
        return response.job

    async def watch(self, job_id: str, seconds: float = 120) -> list[job_pb2.JobUpdate]:
        updates = []
        async with asyncio.timeout(seconds):
            async for update in self.jobs.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id)):
                updates.append(update)
        return updates

    async def scan(self, path: Path, **fields: object) -> tuple[job_pb2.Job, list[job_pb2.JobUpdate]]:
        job = await self.start(path, **fields)
        updates = await self.watch(job.id)
        assert updates[-1].state in TERMINAL
        return updates[-1].job, updates

    async def get(self, job_id: str) -> job_pb2.Job:
        response = await self.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id), timeout=10)
        return response.job

    async def jobs_of(self, parent_id: str = "", page_size: int = 1000) -> list[job_pb2.Job]:
        found: list[job_pb2.Job] = []
        token = ""
        while True:
            response = await self.jobs.ListJobs(
                job_service_pb2.ListJobsRequest(parent_id=parent_id, page_size=page_size, page_token=token),
                timeout=10,
            )
            found += response.jobs
            token = response.next_page_token
            if not token:
                return found

    async def videos(self, prefix: Path, *statuses: library_pb2.VideoStatus) -> list[library_pb2.Video]:
        found: list[library_pb2.Video] = []
        token = ""
        while True:
            request = library_pb2.ListVideosRequest(
                path_prefix=str(prefix), page_size=1000, page_token=token, statuses=statuses
            )
            response = await self.library.ListVideos(request, timeout=10)
            found += response.videos
            token = response.next_page_token
            if not token:
                return found

    async def errors(self, job_id: str) -> list[library_pb2.ScanError]:
        response = await self.library.ListScanErrors(
            library_pb2.ListScanErrorsRequest(job_id=job_id, page_size=1000), timeout=10
        )
        return list(response.errors)


@pytest.fixture
async def api(server: ServerProcess) -> AsyncIterator[Api]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield Api(channel)


def comparable(video: library_pb2.Video) -> library_pb2.Video:
    copy = library_pb2.Video()
    copy.CopyFrom(video)
    for name in UNSTABLE_VIDEO_FIELDS:
        if name in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(name)
    return copy


def result_counts(job: job_pb2.Job) -> dict[str, int]:
    return {field.name: value for field, value in job.result.ListFields()}


async def test_a_sharded_scan_stores_and_counts_what_an_unsharded_one_does(
    api: Api, media: Path, clip: Path, request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    root = make_tree(media / "equal", clip, {"": 7, "a": 33, "a/deep": 25, "b": 41, "c d": 3}, broken=3)
    files = 7 + 33 + 25 + 41 + 3 + 3

    parent, updates = await api.scan(root, sharding=scan_service_pb2.SHARDING_ALWAYS)
    assert parent.state == job_pb2.JOB_STATE_SUCCEEDED, parent  # per-file probe errors never fail a scan
    assert parent.result.discovered == files and parent.result.new == files - 3 and parent.result.failed == 3

    shards = await api.jobs_of(parent.id)
    assert len(shards) == -(-(files - 0) // SHARD_SIZE), [s.id for s in shards]  # ceil(files to probe / size)
    assert all(s.parent_id == parent.id and s.state == job_pb2.JOB_STATE_SUCCEEDED for s in shards)
    assert sum(s.result.probed for s in shards) == files  # disjoint and complete: every file probed exactly once
    top_level = {j.id for j in await api.jobs_of()}
    assert parent.id in top_level and not top_level & {s.id for s in shards}  # hidden from the default listing
    assert (await api.get(shards[0].id)).parent_id == parent.id

    # The parent's progress: real (moves during probing), never backwards, 1.0 at the end.
    fractions = [u.progress for u in updates]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    probing = [u for u in updates if u.job.progress_detail.stage == job_pb2.JOB_STAGE_PROBING]
    detail = [u.progress_detail for u in probing]
    assert any(0 < d.items_done < d.items_total == files for d in detail), detail[-3:]
    done = [d.items_done for d in detail]
    assert done == sorted(done), f"the parent's items_done went backwards: {done}"
    off = [(u.progress, u.result.probed) for u in probing if abs(u.progress - u.result.probed / files) > 0.01]
    assert not off, f"progress is not files probed / files to probe: {off[:5]}"

    # Every shard's per-file errors are the parent's; a shard's own list points there rather than look clean.
    errors = await api.errors(parent.id)
    assert sorted(os.path.basename(e.path) for e in errors) == ["broken 0.mp4", "broken 1.mp4", "broken 2.mp4"]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.errors(shards[0].id)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"is a shard of scan {parent.id}, whose errors are listed under {parent.id}" in str(refused.value.details())

    # The same tree scanned unsharded into a fresh database: the same counts, the same library, field by field.
    with start_server(request, tmp_path, backend, media) as other:
        async with grpc.aio.insecure_channel(other.address) as channel:
            plain = Api(channel)
            single, _ = await plain.scan(root, sharding=scan_service_pb2.SHARDING_NEVER)
            assert await plain.jobs_of(single.id) == []
            assert result_counts(single) == result_counts(parent)
            expected = [comparable(v) for v in await plain.videos(root)]
            unsharded_errors = sorted((e.path, e.reason) for e in await plain.errors(single.id))
    assert [comparable(v) for v in await api.videos(root)] == expected
    assert sorted((e.path, e.reason) for e in errors) == unsharded_errors

    # A rescan has nothing to probe: no shards, whatever the request says.
    rescan, _ = await api.scan(root, sharding=scan_service_pb2.SHARDING_ALWAYS)
    assert rescan.result.unchanged == files and rescan.result.probed == 0
    assert await api.jobs_of(rescan.id) == []


async def test_files_gone_from_disk_are_marked_missing_by_the_parent(api: Api, media: Path, clip: Path) -> None:
    root = make_tree(media / "gone", clip, {"x": 30, "y": 30})
    first, _ = await api.scan(root)
    assert first.result.new == 60
    for i in range(10):
        (root / "y" / f"clip {i:03d}.mp4").unlink()
    for i in range(30, 45):
        os.link(clip, root / "x" / f"clip {i:03d}.mp4")
    second, _ = await api.scan(root, sharding=scan_service_pb2.SHARDING_ALWAYS)
    assert second.state == job_pb2.JOB_STATE_SUCCEEDED
    assert (second.result.new, second.result.unchanged, second.result.missing) == (15, 50, 10)
    assert len(await api.jobs_of(second.id)) == 2  # 15 new files, at least two shards
    missing = await api.videos(root, library_pb2.VIDEO_STATUS_MISSING)
    assert sorted(os.path.basename(v.path) for v in missing) == [f"clip {i:03d}.mp4" for i in range(10)]


async def test_sharding_auto_follows_the_threshold_and_never_means_one_job(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, media: Path, clip: Path
) -> None:
    root = make_tree(media / "auto", clip, {"p": 25, "q": 25})
    with start_server(request, tmp_path, backend, media, "--shard-threshold", "50") as proc:
        async with grpc.aio.insecure_channel(proc.address) as channel:
            api = Api(channel)
            never, _ = await api.scan(root, sharding=scan_service_pb2.SHARDING_NEVER, force=True)
            assert never.result.new == 50 and await api.jobs_of(never.id) == []
            auto, _ = await api.scan(root, force=True)  # unspecified: auto, and 50 files reach the threshold
            assert auto.result.updated == 50 and len(await api.jobs_of(auto.id)) == 3


async def test_cancelling_the_parent_stops_every_shard_at_once(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, media: Path, clip: Path
) -> None:
    root = make_tree(media / "cancel", clip, {"m": 40, "n": 40})
    with start_server(request, tmp_path, backend, media, "--probe-delay", "0.5") as proc:
        async with grpc.aio.insecure_channel(proc.address) as channel:
            api = Api(channel)
            parent = await api.start(root, sharding=scan_service_pb2.SHARDING_ALWAYS)
            children = functools.partial(api.jobs_of, parent.id)
            await poll(children, lambda shards: any(s.state == job_pb2.JOB_STATE_RUNNING for s in shards), 30)
            cancelled_at = time.monotonic()
            await api.jobs.CancelJob(job_service_pb2.CancelJobRequest(job_id=parent.id), timeout=10)
            shards = await poll(children, lambda shards: all(s.state in TERMINAL for s in shards), 5)
            stopped_s = time.monotonic() - cancelled_at
            assert {s.state for s in shards} == {job_pb2.JOB_STATE_CANCELLED}, shards
            # a probe delay of 0.5 s per file: only killing the in-flight probes gets every shard down this fast
            assert stopped_s < 1.0, stopped_s
            final = (await api.watch(parent.id))[-1]
            assert final.state == job_pb2.JOB_STATE_CANCELLED
            assert final.job.result.probed == sum(s.result.probed for s in shards) < 80


async def test_a_shard_that_does_not_succeed_fails_the_parent_and_a_timeout_cascades(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, media: Path, clip: Path
) -> None:
    root = make_tree(media / "fail", clip, {"r": 30, "s": 30})
    with start_server(request, tmp_path, backend, media, "--probe-delay", "0.2") as proc:
        async with grpc.aio.insecure_channel(proc.address) as channel:
            api = Api(channel)
            parent = await api.start(root, sharding=scan_service_pb2.SHARDING_ALWAYS)
            children = functools.partial(api.jobs_of, parent.id)
            shards = await poll(children, lambda shards: len(shards) == 3, 30)
            victim = shards[-1]  # newest first: the last one created, still pending or running
            await api.jobs.CancelJob(job_service_pb2.CancelJobRequest(job_id=victim.id), timeout=10)
            final = (await api.watch(parent.id))[-1]
            assert final.state == job_pb2.JOB_STATE_FAILED
            assert final.job.error.code == grpc.StatusCode.ABORTED.value[0]
            assert victim.id in final.job.error.message and "CANCELLED" in final.job.error.message
            await poll(children, lambda shards: all(s.state in TERMINAL for s in shards), 5)

            timed = await api.start(
                root, sharding=scan_service_pb2.SHARDING_ALWAYS, force=True, timeout=duration_pb2.Duration(seconds=2)
            )
            ended = (await api.watch(timed.id))[-1]
            assert ended.state == job_pb2.JOB_STATE_TIMED_OUT
            shards = await poll(
                functools.partial(api.jobs_of, timed.id), lambda shards: all(s.state in TERMINAL for s in shards), 3
            )
            # 60 files at 0.2 s each on two workers outlast 2 s: the shards still at work were cancelled with it
            assert job_pb2.JOB_STATE_CANCELLED in {s.state for s in shards}, shards


async def test_deleting_the_parent_deletes_its_shards_and_their_errors(api: Api, media: Path, clip: Path) -> None:
    root = make_tree(media / "delete", clip, {"u": 12, "v": 12}, broken=2)
    parent, _ = await api.scan(root, sharding=scan_service_pb2.SHARDING_ALWAYS)
    shards = await api.jobs_of(parent.id)
    assert len(shards) == 2 and len(await api.errors(parent.id)) == 2
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # a shard belongs to its parent: deleted with it only
        await api.jobs.DeleteJob(job_service_pb2.DeleteJobRequest(job_id=shards[0].id), timeout=10)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION and parent.id in refused.value.details()
    await api.jobs.DeleteJob(job_service_pb2.DeleteJobRequest(job_id=parent.id), timeout=10)
    for job_id in [parent.id, *(s.id for s in shards)]:
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await api.get(job_id)
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    assert await api.jobs_of(parent.id) == []


async def test_bad_sharding_and_parent_filters_are_invalid_arguments(api: Api, media: Path) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as bad_mode:
        await api.start(media, sharding=99)
    assert bad_mode.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "sharding" in bad_mode.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as long_parent:
        await api.jobs_of("x" * 129)
    assert long_parent.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "parent_id" in long_parent.value.details()
    assert await api.jobs_of("no-such-parent") == []
    # a page token names its filters: one issued for a parent's children is not valid for the top level
    first = await api.jobs.ListJobs(job_service_pb2.ListJobsRequest(page_size=1), timeout=10)
    if first.next_page_token:
        with pytest.raises(grpc.aio.AioRpcError) as mixed:
            await api.jobs.ListJobs(
                job_service_pb2.ListJobsRequest(parent_id="p", page_size=1, page_token=first.next_page_token),
                timeout=10,
            )
        assert mixed.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("kill", [True, False], ids=["kill-9", "sigterm"])
async def test_a_restarted_sqlite_server_adopts_its_sharded_scan_and_ends_with_the_same_result(
    kill: bool, request: pytest.FixtureRequest, tmp_path: Path, clip: Path
) -> None:
    # One server restarted on its own file (on PostgreSQL, tests/replicas kill the coordinating replica).
    media = tmp_path / "media"
    root = make_tree(media / "restart", clip, {"k": 30, "l": 30})
    with start_server(request, tmp_path, "sqlite", media, "--probe-delay", "0.05") as proc:
        async with grpc.aio.insecure_channel(proc.address) as channel:
            api = Api(channel)
            parent = await api.start(root, sharding=scan_service_pb2.SHARDING_ALWAYS)
            children = functools.partial(api.jobs_of, parent.id)
            before = await poll(
                children, lambda shards: any(s.state == job_pb2.JOB_STATE_SUCCEEDED for s in shards), 30
            )
        proc.restart(kill=kill)  # kill -9: the next server recovers at once (it holds the file's lock)
        async with grpc.aio.insecure_channel(proc.address) as channel:
            api = Api(channel)
            final = (await api.watch(parent.id))[-1]
            shards = await api.jobs_of(parent.id)
            videos = await api.videos(root)
    assert final.state == job_pb2.JOB_STATE_SUCCEEDED, final.job.error
    assert sorted(s.id for s in shards) == sorted(s.id for s in before) == [f"{parent.id}-00{i}" for i in (1, 2, 3)]
    assert all(s.state == job_pb2.JOB_STATE_SUCCEEDED for s in shards)
    result = final.job.result
    assert (result.discovered, result.new, result.probed, result.failed) == (60, 60, 60, 0), result
    assert sum(s.result.probed for s in shards) == 60
    assert len(videos) == 60 and all(v.status == library_pb2.VIDEO_STATUS_OK for v in videos)
