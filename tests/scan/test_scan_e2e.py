"""ScanService and LibraryService end to end: the real server process, real clips, a real channel.

The server runs with fault injection (files named *reelscan-hang* / *reelscan-crash* hang or kill their probe
worker), a 1 s probe timeout and a small probe delay so progress can be watched between files.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from reelscan.limits import MAX_ID_CHARS, MAX_PATH_CHARS
from reelscan.v1 import (
    job_pb2,
    job_service_pb2,
    library_pb2,
    scan_service_pb2,
)
from tests.helpers.databases import BACKENDS, new_database
from tests.helpers.server import ServerProcess
from tests.helpers.stubs import Stubs
from tests.media import copy_clip, make_fifo
from tests.scan.conftest import Corpus

PROBE_DELAY_S = 0.03
TERMINAL = (
    job_pb2.JOB_STATE_SUCCEEDED,
    job_pb2.JOB_STATE_FAILED,
    job_pb2.JOB_STATE_CANCELLED,
    job_pb2.JOB_STATE_TIMED_OUT,
)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def allowed(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Path:
    return tmp_path_factory.mktemp(f"allowed-{backend}")


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, allowed: Path, backend: str
) -> Iterator[ServerProcess]:
    args = [
        "--fault-injection",
        "--probe-timeout",
        "1",
        "--probe-workers",
        "2",
        "--probe-delay",
        str(PROBE_DELAY_S),
    ]
    db = new_database(backend, request, tmp_path_factory.mktemp("db"))
    with ServerProcess(db, allow_roots=[allowed], extra_args=args) as proc:
        yield proc


class Api(Stubs):
    async def start(self, path: str | Path, **fields: object) -> scan_service_pb2.StartScanResponse:
        request = scan_service_pb2.StartScanRequest(path=str(path), **fields)  # type: ignore[arg-type]
        response: scan_service_pb2.StartScanResponse = await self.scans.StartScan(request, timeout=10)
        return response

    async def watch(self, job_id: str) -> list[job_pb2.JobUpdate]:
        updates = []
        async with asyncio.timeout(60):
            async for update in self.jobs.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id)):
                updates.append(update)
        return updates

    async def scan(self, path: str | Path, **fields: object) -> job_pb2.Job:
        """Starts a scan and watches it to the end; returns the terminal job."""
        job = (await self.start(path, **fields)).job
        updates = await self.watch(job.id)
        assert updates[-1].state in TERMINAL
        return updates[-1].job

    async def videos(self, **fields: object) -> list[library_pb2.Video]:
        """Every page of ListVideos."""
        found: list[library_pb2.Video] = []
        token = ""
        while True:
            request = library_pb2.ListVideosRequest(page_token=token, **fields)  # type: ignore[arg-type]
            response = await self.library.ListVideos(request, timeout=10)
            found += response.videos
            token = response.next_page_token
            if not token:
                return found

    async def errors(self, job_id: str) -> list[library_pb2.ScanError]:
        response = await self.library.ListScanErrors(library_pb2.ListScanErrorsRequest(job_id=job_id), timeout=10)
        return list(response.errors)


@pytest.fixture
async def api(server: ServerProcess) -> AsyncIterator[Api]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield Api(channel)


def build_library(corpus: Corpus, root: Path) -> dict[str, Path]:
    """Good clips, broken files, a hanging and a crashing file (fault injection) and a FIFO under `root`."""
    files = {}
    for name, clip in corpus.clips.items():
        files[name] = copy_clip(clip.path, root / os.path.relpath(clip.path, corpus.directory))
    for name, path in corpus.broken.items():
        files[name] = copy_clip(path, root / "broken" / path.name)
    files["hang"] = copy_clip(corpus.clips["h264_aac"].path, root / "faults" / "a-reelscan-hang.mp4")
    files["crash"] = copy_clip(corpus.clips["h264_aac"].path, root / "faults" / "b-reelscan-crash.mp4")
    files["fifo"] = make_fifo(root / "faults" / "x.mp4")
    return files


def status_field(error: grpc.aio.AioRpcError) -> str:
    """The field named by the BadRequest / ErrorInfo details of an error."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.metadata.get("field", "")
    return ""


# --- StartScan path policy -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def policy_tree(allowed: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    outside = tmp_path_factory.mktemp("outside")
    base = allowed / "policy"
    (base / "dir" / "sub").mkdir(parents=True)
    (base / "file.mp4").write_bytes(b"x")
    (base / "escape").symlink_to(outside)
    (base / "inside-link").symlink_to(base / "dir")
    return {"base": base, "outside": outside}


@pytest.mark.parametrize(
    ("make_path", "code", "message"),
    [
        (lambda t: "", grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        (lambda t: "relative/path", grpc.StatusCode.INVALID_ARGUMENT, "absolute"),
        (lambda t: f"{t['base']}/dir\x00", grpc.StatusCode.INVALID_ARGUMENT, "NUL"),
        (lambda t: str(t["outside"]), grpc.StatusCode.PERMISSION_DENIED, "outside the allowed roots"),
        (lambda t: f"{t['outside']}/not-there", grpc.StatusCode.PERMISSION_DENIED, "outside the allowed roots"),
        (lambda t: f"{t['base']}/escape", grpc.StatusCode.PERMISSION_DENIED, "resolves to"),
        (lambda t: f"{t['base']}/escape/deeper", grpc.StatusCode.PERMISSION_DENIED, "outside"),
        (lambda t: f"{t['base']}/dir/../../../{t['outside'].name}", grpc.StatusCode.PERMISSION_DENIED, "outside"),
        (lambda t: "/etc", grpc.StatusCode.PERMISSION_DENIED, "outside"),
        (lambda t: f"{t['base']}/missing", grpc.StatusCode.NOT_FOUND, "does not exist"),
        (lambda t: f"{t['base']}/file.mp4", grpc.StatusCode.FAILED_PRECONDITION, "not a directory"),
    ],
    ids=[
        "empty",
        "relative",
        "nul",
        "outside",
        "outside-missing",
        "symlink-out",
        "through-symlink-out",
        "dotdot-out",
        "etc",
        "missing",
        "file",
    ],
)
async def test_start_scan_path_policy(
    api: Api, policy_tree: dict[str, Path], make_path: object, code: grpc.StatusCode, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.start(make_path(policy_tree))  # type: ignore[operator]
    assert info.value.code() == code, info.value.details()
    assert message in (info.value.details() or "")
    assert status_field(info.value) == "path"


async def test_dotdot_and_links_inside_the_root_are_resolved(api: Api, policy_tree: dict[str, Path]) -> None:
    base = policy_tree["base"]
    via_dotdot = await api.start(f"{base}/dir/sub/..")
    assert via_dotdot.job.scan.path == str(base / "dir")
    await api.watch(via_dotdot.job.id)
    via_link = await api.start(base / "inside-link")
    assert via_link.job.scan.path == str(base / "dir")  # stored resolved: the worker scans what was checked
    await api.watch(via_link.job.id)


async def test_other_invalid_fields(api: Api, policy_tree: dict[str, Path]) -> None:
    base = policy_tree["base"] / "dir"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.start(base, extensions=["mp4", "../etc"])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and status_field(info.value) == "extensions"
    for timeout in (
        duration_pb2.Duration(seconds=-5),
        duration_pb2.Duration(),
        duration_pb2.Duration(seconds=2**63 - 1),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api.start(base, timeout=timeout)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, timeout
        assert status_field(info.value) == "timeout"
    listing = await api.jobs.ListJobs(job_service_pb2.ListJobsRequest(), timeout=10)  # nothing poisoned
    assert all(job.timeout.seconds <= 366 * 86400 for job in listing.jobs)


async def test_defaults_in_the_stored_spec(api: Api, policy_tree: dict[str, Path]) -> None:
    response = await api.start(policy_tree["base"] / "dir", extensions=[".MP4", "mkv", "mp4"])
    spec = response.job.scan
    assert (spec.recursive, spec.force, spec.follow_symlinks) == (True, False, False)
    assert list(spec.extensions) == ["mp4", "mkv"]
    await api.watch(response.job.id)


# --- scanning a hostile corpus ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scanned_root(allowed: Path, corpus: Corpus) -> tuple[Path, dict[str, Path]]:
    root = allowed / "library"
    return root, build_library(corpus, root)


@pytest.fixture(scope="module")
def first_scan_updates(backend: str) -> list[job_pb2.JobUpdate]:
    return []  # one cache per backend's server


async def scan_once(api: Api, root: Path, cache: list[job_pb2.JobUpdate]) -> list[job_pb2.JobUpdate]:
    """The module's first scan of the hostile corpus, run once and shared by the tests that look at it."""
    if not cache:
        start = await api.start(root)
        cache += await api.watch(start.job.id)
    return cache


async def test_scan_with_broken_files_succeeds_with_right_counts(
    api: Api, scanned_root: tuple[Path, dict[str, Path]], first_scan_updates: list[job_pb2.JobUpdate]
) -> None:
    root, _files = scanned_root
    updates = await scan_once(api, root, first_scan_updates)
    final = updates[-1]
    assert final.state == job_pb2.JOB_STATE_SUCCEEDED, final.error
    assert final.progress == 1.0
    r = final.result
    # 7 good clips, 4 broken files, a hanging and a crashing probe, and a FIFO named x.mp4.
    assert (r.discovered, r.new, r.updated, r.unchanged, r.failed, r.missing) == (14, 7, 0, 0, 7, 0)
    assert r.probed == 13  # everything but the FIFO, which the walker refuses to open
    assert r.discovered == r.new + r.updated + r.unchanged + r.failed


async def test_progress_is_visible(
    api: Api, scanned_root: tuple[Path, dict[str, Path]], first_scan_updates: list[job_pb2.JobUpdate]
) -> None:
    root, _ = scanned_root
    updates = await scan_once(api, root, first_scan_updates)
    seqs = [u.seq for u in updates]
    assert seqs == sorted(set(seqs))
    progress = [u.progress for u in updates]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any(0 < p < 1 for p in progress)  # real intermediate values, not a jump from 0 to 1
    stages = [u.progress_detail.stage for u in updates if u.state == job_pb2.JOB_STATE_RUNNING]
    assert job_pb2.JOB_STAGE_PROBING in stages
    probing = [u for u in updates if u.progress_detail.stage == job_pb2.JOB_STAGE_PROBING]
    assert all(u.progress_detail.items_total == 13 for u in probing)
    # Each update is one snapshot: its progress and its counts agree (not the progress of one moment and the
    # counts of an earlier one).
    assert [u.progress_detail.items_done for u in probing] == [u.result.probed for u in probing]
    current = {u.progress_detail.current_item for u in probing if u.progress_detail.current_item}
    assert current and all(c.startswith(str(root) + "/") for c in current)


async def test_scan_errors_say_what_went_wrong(
    api: Api, scanned_root: tuple[Path, dict[str, Path]], first_scan_updates: list[job_pb2.JobUpdate]
) -> None:
    root, files = scanned_root
    updates = await scan_once(api, root, first_scan_updates)
    errors = {e.path: e for e in await api.errors(updates[-1].job_id)}
    kinds = {name: errors[str(files[name])].kind for name in ("zero", "random", "truncated", "corrupt")}
    assert set(kinds.values()) == {library_pb2.SCAN_ERROR_KIND_PROBE_FAILED}
    assert errors[str(files["hang"])].kind == library_pb2.SCAN_ERROR_KIND_PROBE_TIMEOUT
    assert errors[str(files["crash"])].kind == library_pb2.SCAN_ERROR_KIND_PROBE_CRASHED
    assert errors[str(files["fifo"])].kind == library_pb2.SCAN_ERROR_KIND_UNREADABLE
    assert "not a regular file" in errors[str(files["fifo"])].reason
    assert len(errors) == 7
    assert all(e.reason and e.job_id == updates[-1].job_id and e.create_time.seconds for e in errors.values())


async def test_list_scan_errors_unknown_job(api: Api) -> None:
    for job_id, code in (("no-such-job", grpc.StatusCode.NOT_FOUND), ("", grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api.errors(job_id)
        assert info.value.code() == code


def path_of_length(base: str, length: int) -> str:
    """An absolute path below `base` of exactly `length` characters, in components short enough for the kernel."""
    path = base
    while len(path) < length:
        room = length - len(path)
        path += "x" if room == 1 else "/" + "x" * min(100, room - 1)
    assert len(path) == length
    return path


async def test_request_limits_at_their_one_value(api: Api, allowed: Path) -> None:
    """A path of MAX_PATH_CHARS is judged on its merits and one of MAX_PATH_CHARS + 1 is INVALID_ARGUMENT naming
    its field, in every RPC that takes a path; likewise a job id of MAX_ID_CHARS and one more in ListScanErrors
    (JobService's job ids: tests/jobs/test_job_limits.py)."""
    base = f"{allowed}/too-long"
    for length in (MAX_PATH_CHARS, MAX_PATH_CHARS + 1):
        path = path_of_length(base, length)
        calls = {
            "path": api.scans.StartScan(scan_service_pb2.StartScanRequest(path=path), timeout=10),
            "path_prefix": api.library.ListVideos(library_pb2.ListVideosRequest(path_prefix=path), timeout=10),
            "GetVideo.path": api.library.GetVideo(library_pb2.GetVideoRequest(path=path), timeout=10),
        }
        for field, call in calls.items():
            if length > MAX_PATH_CHARS:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
                assert status_field(info.value) == field.removeprefix("GetVideo."), field
            elif field == "path_prefix":
                assert not (await call).videos
            else:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call
                # Missing (or too long for the kernel to look up), but not refused for its length.
                assert info.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION), field
    for length, code in (
        (MAX_ID_CHARS, grpc.StatusCode.NOT_FOUND),
        (MAX_ID_CHARS + 1, grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api.errors("a" * length)
        assert info.value.code() == code, length


async def test_library_holds_the_good_clips_with_metadata(
    api: Api,
    corpus: Corpus,
    scanned_root: tuple[Path, dict[str, Path]],
    first_scan_updates: list[job_pb2.JobUpdate],
) -> None:
    root, files = scanned_root
    await scan_once(api, root, first_scan_updates)
    videos = {v.path: v for v in await api.videos(path_prefix=str(root))}
    assert set(videos) == {str(files[name]) for name in corpus.clips}
    hdr = videos[str(files["hdr10"])]
    assert (hdr.video.codec, hdr.video.bit_depth, hdr.video.hdr, hdr.video.color_transfer) == (
        "h264",
        10,
        True,
        "smpte2084",
    )
    rotated = videos[str(files["mkv_rotated"])]
    assert (rotated.video.rotation, len(rotated.audio), rotated.container_format) == (90, 0, "matroska,webm")
    h264 = videos[str(files["h264_aac"])]
    assert [(a.codec, a.channels, a.sample_rate, a.language) for a in h264.audio] == [("aac", 2, 48000, "eng")]
    assert list(h264.subtitle_languages) == ["eng", "fra"] and h264.subtitle_count == 2
    assert h264.creation_time.ToSeconds() == 1_704_164_645
    assert abs(h264.duration.ToMicroseconds() - 1_000_000) < 40_000
    assert h264.video.frame_rate == 25.0 and (h264.video.width, h264.video.height) == (64, 48)
    st = files["h264_aac"].stat()
    assert h264.size_bytes == st.st_size and h264.mtime.ToNanoseconds() == st.st_mtime_ns
    assert h264.file_name == "h264_aac.mp4" and not h264.missing
    assert h264.probe_time.seconds and h264.create_time.seconds and h264.id


async def test_list_videos_filters_and_pages(
    api: Api, scanned_root: tuple[Path, dict[str, Path]], first_scan_updates: list[job_pb2.JobUpdate]
) -> None:
    root, _files = scanned_root
    await scan_once(api, root, first_scan_updates)
    prefix = str(root)

    async def names(**fields: object) -> list[str]:
        return [v.file_name for v in await api.videos(path_prefix=prefix, **fields)]

    assert await names(video_codec="VP9") == ["vp9_opus.webm"]
    assert await names(min_height=200) == ["tall_holiday.mp4"]
    assert await names(min_duration=duration_pb2.Duration(seconds=1, nanos=500_000_000)) == ["tall_holiday.mp4"]
    assert await names(max_duration=duration_pb2.Duration(seconds=1, nanos=10_000_000)) != []
    assert await names(query="holiday") == ["tall_holiday.mp4"]
    assert await names(query="hdr10 CLIP") == ["hdr10 clip.mp4"]
    assert await names(query="'; DROP TABLE videos; --") == []
    assert sorted(await names(query="opus")) == ["av1_opus.mkv", "vp9_opus.webm"]
    assert await api.videos(path_prefix=prefix + "/sub") == await api.videos(path_prefix=prefix + "/sub/")
    assert await api.videos(path_prefix=prefix + "/su") == []  # a whole component, not a string prefix

    # Pages of 2 cover all 7 videos exactly once, in path order.
    pages: list[list[str]] = []
    token = ""
    while True:
        request = library_pb2.ListVideosRequest(path_prefix=prefix, page_size=2, page_token=token)
        response = await api.library.ListVideos(request, timeout=10)
        pages.append([v.path for v in response.videos])
        token = response.next_page_token
        if not token:
            break
    flat = [p for page in pages for p in page]
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert flat == sorted(flat) and len(set(flat)) == 7


async def test_list_videos_bad_requests(api: Api, scanned_root: tuple[Path, dict[str, Path]]) -> None:
    root, _ = scanned_root
    first = await api.library.ListVideos(library_pb2.ListVideosRequest(path_prefix=str(root), page_size=1))
    assert first.next_page_token
    bad_requests = [
        library_pb2.ListVideosRequest(page_token="not a token"),
        library_pb2.ListVideosRequest(path_prefix="/elsewhere", page_size=1, page_token=first.next_page_token),
        library_pb2.ListVideosRequest(page_size=-1),
        library_pb2.ListVideosRequest(min_height=-1),
        library_pb2.ListVideosRequest(
            min_duration=duration_pb2.Duration(seconds=5), max_duration=duration_pb2.Duration(seconds=1)
        ),
        library_pb2.ListVideosRequest(statuses=[library_pb2.VIDEO_STATUS_UNSPECIFIED]),
        library_pb2.ListVideosRequest(statuses=[library_pb2.VIDEO_STATUS_FAILED, 42]),  # type: ignore[list-item]
    ]
    for request in bad_requests:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api.library.ListVideos(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request


async def test_get_video(
    api: Api, scanned_root: tuple[Path, dict[str, Path]], first_scan_updates: list[job_pb2.JobUpdate]
) -> None:
    root, files = scanned_root
    await scan_once(api, root, first_scan_updates)
    by_path = (await api.library.GetVideo(library_pb2.GetVideoRequest(path=str(files["av1"])))).video
    assert by_path.video.codec == "av1" and by_path.video.frame_rate == 30.0
    by_id = (await api.library.GetVideo(library_pb2.GetVideoRequest(id=by_path.id))).video
    assert by_id == by_path
    # A file whose probe failed is in the library as a broken file, with why: by path and by id.
    zero = (await api.library.GetVideo(library_pb2.GetVideoRequest(path=str(files["zero"])))).video
    assert (zero.status, zero.failure_kind) == (
        library_pb2.VIDEO_STATUS_FAILED,
        library_pb2.SCAN_ERROR_KIND_PROBE_FAILED,
    )
    assert zero.failure_reason and not zero.HasField("video") and zero.size_bytes == 0
    assert (await api.library.GetVideo(library_pb2.GetVideoRequest(id=zero.id))).video == zero
    assert by_path.status == library_pb2.VIDEO_STATUS_OK and by_path.failure_reason == ""
    for request, code in (
        (library_pb2.GetVideoRequest(id="123456789"), grpc.StatusCode.NOT_FOUND),
        (library_pb2.GetVideoRequest(id="not-an-id"), grpc.StatusCode.NOT_FOUND),
        (library_pb2.GetVideoRequest(path=str(files["fifo"])), grpc.StatusCode.NOT_FOUND),  # not a regular file
        (library_pb2.GetVideoRequest(path="/nowhere.mp4"), grpc.StatusCode.NOT_FOUND),
        (library_pb2.GetVideoRequest(), grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api.library.GetVideo(request, timeout=10)
        assert info.value.code() == code


# --- incremental, dedup, cancel ----------------------------------------------------------------------------------


async def test_rescans_through_the_api(api: Api, allowed: Path, corpus: Corpus) -> None:
    root = allowed / "incremental"
    for i, clip in enumerate(corpus.clips.values()):
        copy_clip(clip.path, root / f"{i}{clip.path.suffix}")
    first = await api.scan(root)
    assert (first.result.discovered, first.result.new, first.result.probed) == (7, 7, 7)
    again = await api.scan(root)
    assert (again.result.discovered, again.result.unchanged, again.result.probed) == (7, 7, 0)
    assert again.state == job_pb2.JOB_STATE_SUCCEEDED and again.progress == 1.0
    touched = root / "0.mp4"
    os.utime(touched, ns=(time.time_ns(), time.time_ns()))
    (root / "1.webm").unlink()
    third = await api.scan(root)
    r = third.result
    assert (r.discovered, r.probed, r.updated, r.unchanged, r.missing) == (6, 1, 1, 5, 1)
    missing = [v for v in await api.videos(path_prefix=str(root), include_missing=True) if v.missing]
    assert [v.file_name for v in missing] == ["1.webm"]
    forced = await api.scan(root, force=True)
    assert (forced.result.probed, forced.result.updated) == (6, 6)


async def test_broken_files_stay_in_the_library_across_rescans(api: Api, allowed: Path, corpus: Corpus) -> None:
    """Scan a tree with broken files, rescan it: the rescan says how many known-broken files it skipped, and
    ListVideos lists them with their reasons; a broken file replaced by a good clip becomes a video."""
    root = allowed / "broken-rescan"
    good = [copy_clip(corpus.clips[name].path, root / f"good-{name}.mp4") for name in ("h264_aac", "tall")]
    broken = {copy_clip(path, root / "bad" / path.name): "PROBE_FAILED" for path in corpus.broken.values()}
    broken[copy_clip(corpus.clips["h264_aac"].path, root / "bad" / "x-reelscan-crash.mp4")] = "PROBE_CRASHED"
    failed_only = [library_pb2.VIDEO_STATUS_FAILED]

    first = await api.scan(root)
    assert (first.result.discovered, first.result.new, first.result.failed) == (7, 2, 5)
    assert first.result.unchanged_failed == 0
    reasons = {e.path: e.reason for e in await api.errors(first.id)}
    assert set(reasons) == {str(p) for p in broken}

    again = await api.scan(root)
    r = again.result
    assert (r.discovered, r.probed, r.unchanged, r.failed) == (7, 0, 7, 0)
    assert r.unchanged_failed == len(broken) == 5  # skipped without a probe, and said so
    assert await api.errors(again.id) == []  # nothing was tried, so nothing failed in this scan

    listed = {v.path: v for v in await api.videos(path_prefix=str(root), statuses=failed_only)}
    assert set(listed) == {str(p) for p in broken}
    for path, kind in broken.items():
        video = listed[str(path)]
        assert video.status == library_pb2.VIDEO_STATUS_FAILED and not video.missing
        assert video.failure_reason == reasons[str(path)]  # the reason of the scan that tried it
        assert library_pb2.ScanErrorKind.Name(video.failure_kind) == f"SCAN_ERROR_KIND_{kind}"
        # When the probe was last tried: during the first scan, not the rescan that skipped it.
        assert first.start_time.ToNanoseconds() <= video.probe_time.ToNanoseconds() <= first.finish_time.ToNanoseconds()
        assert not video.HasField("video") and not video.HasField("duration") and video.container_format == ""
        assert video.size_bytes == path.stat().st_size and video.file_name == path.name
    assert {v.path for v in await api.videos(path_prefix=str(root))} == {str(p) for p in good}  # default: OK only
    both = [library_pb2.VIDEO_STATUS_OK, library_pb2.VIDEO_STATUS_FAILED]
    assert len(await api.videos(path_prefix=str(root), statuses=both)) == 7

    # The truncated file is replaced by a good clip: probed again (it changed), a video now, no longer broken.
    fixed = next(p for p in broken if p.name == corpus.broken["truncated"].name)
    copy_clip(corpus.clips["vp9_opus"].path, fixed)
    third = await api.scan(root)
    r = third.result
    assert (r.probed, r.updated, r.unchanged, r.unchanged_failed, r.failed) == (1, 1, 6, 4, 0)
    video = (await api.library.GetVideo(library_pb2.GetVideoRequest(path=str(fixed)))).video
    assert (video.status, video.failure_reason, video.video.codec) == (library_pb2.VIDEO_STATUS_OK, "", "vp9")
    assert video.id == listed[str(fixed)].id  # the same entry, now a video
    still = {v.path for v in await api.videos(path_prefix=str(root), statuses=failed_only)}
    assert still == {str(p) for p in broken} - {str(fixed)}
    assert str(fixed) in {v.path for v in await api.videos(path_prefix=str(root))}

    # A broken file deleted from disk is MISSING, keeping why it was broken.
    deleted = next(p for p in broken if p.name == corpus.broken["zero"].name)
    deleted.unlink()
    fourth = await api.scan(root)
    assert (fourth.result.missing, fourth.result.unchanged_failed) == (1, 3)
    gone = await api.videos(path_prefix=str(root), statuses=[library_pb2.VIDEO_STATUS_MISSING])
    assert [(v.path, v.status, v.failure_reason) for v in gone] == [
        (str(deleted), library_pb2.VIDEO_STATUS_MISSING, reasons[str(deleted)])
    ]
    assert len(await api.videos(path_prefix=str(root), statuses=failed_only)) == 3


async def test_second_start_returns_the_running_scan(api: Api, allowed: Path, corpus: Corpus) -> None:
    root = allowed / "dedup"
    for i in range(20):
        copy_clip(corpus.clips["h264_aac"].path, root / f"{i:02}.mp4")
    first = await api.start(root)
    second = await api.start(str(root) + "/")  # the same root, spelled differently
    assert second.existing and not first.existing
    assert second.job.id == first.job.id
    await api.watch(first.job.id)
    third = await api.start(root)
    assert not third.existing and third.job.id != first.job.id
    await api.watch(third.job.id)


async def test_cancel_stops_probing_and_keeps_what_was_stored(api: Api, allowed: Path, corpus: Corpus) -> None:
    root = allowed / "cancel"
    for i in range(40):
        copy_clip(corpus.clips["h264_aac"].path, root / f"{i:02}.mp4")
    # Two hanging files keep both workers busy: only killing them can end the scan promptly.
    copy_clip(corpus.clips["h264_aac"].path, root / "000-reelscan-hang.mp4")
    copy_clip(corpus.clips["h264_aac"].path, root / "001-reelscan-hang.mp4")
    start = await api.start(root, timeout=duration_pb2.Duration(seconds=60))
    job_id = start.job.id
    async with asyncio.timeout(30):
        while True:
            job = (await api.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id))).job
            if job.progress_detail.stage == job_pb2.JOB_STAGE_PROBING:
                break
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    began = time.monotonic()
    await api.jobs.CancelJob(job_service_pb2.CancelJobRequest(job_id=job_id))
    updates = await api.watch(job_id)
    assert time.monotonic() - began < 3.0  # loose over gRPC on a shared machine; promptness: test_pool, bench
    final = updates[-1]
    assert final.state == job_pb2.JOB_STATE_CANCELLED
    stored = await api.videos(path_prefix=str(root))
    assert final.result.new == len(stored) < 40  # partial results kept, and they match the library


async def test_scan_of_a_root_swapped_for_a_symlink_after_start_fails(api: Api, allowed: Path, corpus: Corpus) -> None:
    """StartScan accepts the directory; before the worker starts, it is replaced by a link that leads out."""
    blockers = [allowed / "swap-blocker-1", allowed / "swap-blocker-2"]
    for blocker in blockers:  # hanging probes (1 s each) keep these scans running while the test swaps the link
        for i in range(2):
            copy_clip(corpus.clips["h264_aac"].path, blocker / f"{i}-reelscan-hang.mp4")
    target = allowed / "swap"
    target.mkdir()
    outside = allowed.parent / f"{allowed.name}-swap-outside"
    outside.mkdir(exist_ok=True)
    # Fill both job slots (the server runs two at a time) so the next scan waits in the queue.
    busy = [await api.start(blocker) for blocker in blockers]
    queued = await api.start(target)
    assert queued.job.state == job_pb2.JOB_STATE_PENDING
    shutil.rmtree(target)
    target.symlink_to(outside)
    final = (await api.watch(queued.job.id))[-1]
    assert final.state == job_pb2.JOB_STATE_FAILED
    assert final.error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    for job in busy:
        await api.watch(job.job.id)
