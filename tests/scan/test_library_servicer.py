"""LibraryServicer in-process: proto conversion, and pages cut short to fit the message size limit."""

from __future__ import annotations

import time
from typing import Any

import pytest
from google.protobuf import duration_pb2

from reelscan.limits import MAX_PAGE_SIZE
from reelscan.service.api.library_servicer import LibraryServicer, video_filter
from reelscan.service.errors import InvalidArgument
from reelscan.service.jobs.model import Job, JobKind, JobState
from reelscan.service.scan.library_model import ProbedFile, ScanErrorRecord, VideoStatus
from reelscan.service.scan.library_store import LibraryStore
from reelscan.service.scan.media_info import AudioInfo, MediaInfo, ProbeErrorKind, VideoInfo
from reelscan.v1 import library_pb2


class FakeEngine:
    """Only what ListScanErrors asks of the engine: the job, here always a finished scan of its own (no shard)."""

    async def get(self, job_id: str) -> Job:
        return Job(job_id, JobKind.SCAN, JobState.SUCCEEDED, {}, 60.0, time.time(), time.time())


def many_streams(i: int) -> MediaInfo:
    audio = tuple(AudioInfo("aac", 2, 48000, f"l{n:02}") for n in range(64))
    video = VideoInfo("h264", "High", 1920, 1080, 25.0, "yuv420p", 8, 0, "bt709", "bt709", False)
    return MediaInfo(1000 + i, 1, "mov,mp4,m4a,3gp,3g2,mj2", 10_000_000, 800, video, audio, 64, ("x" * 16,) * 64)


@pytest.fixture
async def store(library_store: LibraryStore) -> LibraryStore:
    """A store of each implementation (tests/scan/conftest.py) with big rows: 60 videos, 200 scan errors."""
    store = library_store
    await store.write_batch(
        [ProbedFile(f"/m/{'n' * 200}-{i:03}.mp4", 1000 + i, 1, many_streams(i)) for i in range(60)],
        [
            ScanErrorRecord("job", f"/m/{'e' * 300}-{i:03}.mp4", ProbeErrorKind.PROBE_FAILED, "r" * 256, time.time())
            for i in range(200)
        ],
    )
    return store


async def walk_pages(call: Any, request: Any, field: str, limit: int) -> list[int]:
    sizes = []
    while True:
        response = await call(request, None)
        assert response.ByteSize() <= limit
        sizes.append(len(getattr(response, field)))
        if not response.next_page_token:
            return sizes
        request.page_token = response.next_page_token


async def test_pages_are_cut_to_the_message_limit(store: LibraryStore) -> None:
    limit = 64 * 1024
    servicer = LibraryServicer(store, FakeEngine(), max_message_bytes=limit)  # type: ignore[arg-type]
    sizes = await walk_pages(servicer.ListVideos, library_pb2.ListVideosRequest(page_size=1000), "videos", limit)
    assert sum(sizes) == 60 and len(sizes) > 1  # every video once, over several pages that each fit
    request = library_pb2.ListScanErrorsRequest(job_id="job", page_size=1000)
    sizes = await walk_pages(servicer.ListScanErrors, request, "errors", limit)
    assert sum(sizes) == 200 and len(sizes) > 1


async def test_big_enough_limit_keeps_whole_pages(store: LibraryStore) -> None:
    servicer = LibraryServicer(store, FakeEngine())  # type: ignore[arg-type]
    response = await servicer.ListVideos(library_pb2.ListVideosRequest(page_size=50), None)
    assert len(response.videos) == 50 and response.next_page_token


@pytest.mark.parametrize("field", ["min_duration", "max_duration"])
def test_duration_filters_beyond_range_are_invalid(field: str) -> None:
    request = library_pb2.ListVideosRequest()
    getattr(request, field).CopyFrom(duration_pb2.Duration(seconds=2**62))
    with pytest.raises(InvalidArgument, match="out of range"):
        video_filter(request)
    getattr(request, field).CopyFrom(duration_pb2.Duration(seconds=315_576_000_000))
    video_filter(request)  # the largest valid Duration is fine


def test_status_filters_from_the_request() -> None:
    assert video_filter(library_pb2.ListVideosRequest()).statuses == frozenset()
    request = library_pb2.ListVideosRequest(
        statuses=[library_pb2.VIDEO_STATUS_FAILED, library_pb2.VIDEO_STATUS_MISSING, library_pb2.VIDEO_STATUS_FAILED]
    )
    assert video_filter(request).statuses == {VideoStatus.FAILED, VideoStatus.MISSING}
    for value in (library_pb2.VIDEO_STATUS_UNSPECIFIED, 99):
        with pytest.raises(InvalidArgument, match="statuses") as info:
            video_filter(library_pb2.ListVideosRequest(statuses=[library_pb2.VIDEO_STATUS_OK, value]))  # type: ignore[list-item]
        assert info.value.field == "statuses"
    # The domain enum and the proto enum agree, name for name and number for number.
    assert {s.name: int(s) for s in VideoStatus} == {
        v.name.removeprefix("VIDEO_STATUS_"): v.number
        for v in library_pb2.VideoStatus.DESCRIPTOR.values
        if v.number != 0
    }


async def test_failed_entries_as_messages(library_store: LibraryStore) -> None:
    await library_store.write_batch(
        [
            ProbedFile("/m/ok.mp4", 1000, 1, many_streams(0)),
            ProbedFile("/m/broken.mp4", 7, 1_700_000_000_123_456_789, None, "moov atom not found"),
            ProbedFile("/m/hang.mp4", 8, 2, None, "timed out", ProbeErrorKind.PROBE_TIMEOUT),
        ]
    )
    await library_store.mark_missing(["/m/hang.mp4"])
    servicer = LibraryServicer(library_store, FakeEngine())  # type: ignore[arg-type]
    every = [library_pb2.VIDEO_STATUS_OK, library_pb2.VIDEO_STATUS_FAILED, library_pb2.VIDEO_STATUS_MISSING]
    response = await servicer.ListVideos(library_pb2.ListVideosRequest(statuses=every), None)  # type: ignore[arg-type]
    by_name = {v.file_name: v for v in response.videos}
    ok, broken, hang = by_name["ok.mp4"], by_name["broken.mp4"], by_name["hang.mp4"]
    assert (ok.status, ok.failure_reason, ok.failure_kind) == (library_pb2.VIDEO_STATUS_OK, "", 0)
    assert (broken.status, broken.failure_reason, broken.failure_kind) == (
        library_pb2.VIDEO_STATUS_FAILED,
        "moov atom not found",
        library_pb2.SCAN_ERROR_KIND_PROBE_FAILED,
    )
    # No media fields, but the file's size and mtime and when the probe was last tried.
    assert not broken.HasField("video") and not broken.HasField("duration") and not broken.HasField("creation_time")
    assert (broken.container_format, broken.bit_rate, len(broken.audio), broken.subtitle_count) == ("", 0, 0, 0)
    assert broken.size_bytes == 7 and broken.mtime.ToNanoseconds() == 1_700_000_000_123_456_789
    assert abs(broken.probe_time.ToSeconds() - time.time()) < 60
    assert (hang.status, hang.missing, hang.failure_kind) == (
        library_pb2.VIDEO_STATUS_MISSING,
        True,
        library_pb2.SCAN_ERROR_KIND_PROBE_TIMEOUT,
    )
    got = await servicer.GetVideo(library_pb2.GetVideoRequest(path="/m/broken.mp4"), None)  # type: ignore[arg-type]
    assert got.video == broken
    default = await servicer.ListVideos(library_pb2.ListVideosRequest(), None)  # type: ignore[arg-type]
    assert [v.file_name for v in default.videos] == ["ok.mp4"]


async def test_page_size_is_capped_at_the_one_limit(library_store: LibraryStore) -> None:
    """ListVideos and ListScanErrors answer a page_size above reelscan.limits.MAX_PAGE_SIZE with a page of that many
    (the store holds one more) and a token for the rest."""
    count = MAX_PAGE_SIZE + 1
    now = time.time()
    await library_store.write_batch(
        [
            ProbedFile(f"/m/cap/{i:05}.mp4", 1000, 1, MediaInfo(1000, 1, "mp4", 1, 1, None, (), 0, ()))
            for i in range(count)
        ],
        [ScanErrorRecord("job", f"/m/cap/{i:05}.mp4", ProbeErrorKind.PROBE_FAILED, "bad", now) for i in range(count)],
    )
    servicer = LibraryServicer(library_store, FakeEngine())  # type: ignore[arg-type]
    for requested in (5000, MAX_PAGE_SIZE + 1):
        videos = await servicer.ListVideos(library_pb2.ListVideosRequest(page_size=requested), None)  # type: ignore[arg-type]
        assert len(videos.videos) == MAX_PAGE_SIZE and videos.next_page_token
        request = library_pb2.ListScanErrorsRequest(job_id="job", page_size=requested)
        errors = await servicer.ListScanErrors(request, None)  # type: ignore[arg-type]
        assert len(errors.errors) == MAX_PAGE_SIZE and errors.next_page_token
