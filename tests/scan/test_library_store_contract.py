"""The LibraryStore contract, run against every implementation (the `library_store` fixture, tests/scan/conftest.py):
filters, text search with hostile text, pages and page tokens, incremental rows (what load_known reports, rows
rewritten in place), missing and back, scan errors per job.

Only the protocol is used here; what one implementation does inside (SQLite's FTS5 query) is tested beside it."""

from __future__ import annotations

import time

import pytest

from reelscan.service.errors import InvalidArgument, NotFound
from reelscan.service.jobs import page_token
from reelscan.service.scan.library_model import (
    ProbedFile,
    ScanErrorRecord,
    VideoFilter,
)
from reelscan.service.scan.library_store import LibraryStore
from reelscan.service.scan.media_info import AudioInfo, MediaInfo, ProbeErrorKind, VideoInfo


def info(codec: str = "h264", height: int = 480, duration_s: float = 10.0) -> MediaInfo:
    return MediaInfo(
        size=1000,
        mtime_ns=1,
        container_format="mov,mp4,m4a,3gp,3g2,mj2",
        duration_us=int(duration_s * 1e6),
        bit_rate=800,
        video=VideoInfo(codec, "High", height * 16 // 9, height, 25.0, "yuv420p", 8, 0, "", "", False),
        audio=(AudioInfo("aac", 2, 48000, "eng"),),
        subtitle_count=1,
        subtitle_languages=("fra",),
        creation_time_us=1_704_164_645_000_000,
    )


LIBRARY = {
    "/m/a/holiday beach.mp4": info("h264", 1080, 120),
    "/m/a/holiday_ski-2023.mkv": info("hevc", 2160, 60),
    "/m/a/sub/birthday.mp4": info("vp9", 720, 30),
    "/m/ab/other holiday.mp4": info("h264", 480, 5),
    "/m/b/Café crème.mov": info("av1", 360, 1),
}


@pytest.fixture
async def store(library_store: LibraryStore) -> LibraryStore:
    """A store of each implementation holding LIBRARY and one failed probe."""
    await library_store.write_batch(
        [ProbedFile(p, 1000, 1, i) for p, i in LIBRARY.items()]
        + [ProbedFile("/m/a/broken.mp4", 10, 1, None, "Invalid data")]
    )
    return library_store


async def paths_of(store: LibraryStore, flt: VideoFilter, page_size: int = 100) -> list[str]:
    videos, _ = await store.list_videos(flt, page_size, "")
    return [v.path for v in videos]


async def test_lists_ok_videos_in_path_order(store: LibraryStore) -> None:
    assert await paths_of(store, VideoFilter()) == sorted(LIBRARY)  # the failed probe is not a video


async def test_path_prefix_is_a_whole_component(store: LibraryStore) -> None:
    expected = ["/m/a/holiday beach.mp4", "/m/a/holiday_ski-2023.mkv", "/m/a/sub/birthday.mp4"]
    assert await paths_of(store, VideoFilter(path_prefix="/m/a")) == expected
    assert await paths_of(store, VideoFilter(path_prefix="/m/a/")) == expected
    assert await paths_of(store, VideoFilter(path_prefix="/")) == sorted(LIBRARY)


async def test_codec_duration_height_filters(store: LibraryStore) -> None:
    assert await paths_of(store, VideoFilter(video_codec="H264")) == [
        "/m/a/holiday beach.mp4",
        "/m/ab/other holiday.mp4",
    ]
    assert await paths_of(store, VideoFilter(min_duration_us=30_000_000, max_duration_us=60_000_000)) == [
        "/m/a/holiday_ski-2023.mkv",
        "/m/a/sub/birthday.mp4",
    ]
    assert await paths_of(store, VideoFilter(min_height=1080)) == [
        "/m/a/holiday beach.mp4",
        "/m/a/holiday_ski-2023.mkv",
    ]


async def test_text_search_prefix_words_all_required(store: LibraryStore) -> None:
    assert await paths_of(store, VideoFilter(query="holi")) == [
        "/m/a/holiday beach.mp4",
        "/m/a/holiday_ski-2023.mkv",
        "/m/ab/other holiday.mp4",
    ]
    assert await paths_of(store, VideoFilter(query="holiday ski")) == ["/m/a/holiday_ski-2023.mkv"]
    assert await paths_of(store, VideoFilter(query="HOLIDAY 2023")) == ["/m/a/holiday_ski-2023.mkv"]
    assert await paths_of(store, VideoFilter(query="cafe")) == ["/m/b/Café crème.mov"]  # diacritics folded
    assert await paths_of(store, VideoFilter(query="beach", path_prefix="/m/ab")) == []


@pytest.mark.parametrize(
    "text",
    [
        "'; DROP TABLE videos; --",
        '"',
        '" OR 1=1 --',
        "holiday*",
        "NEAR(holiday beach)",
        "holiday AND NOT beach",
        "file_name:holiday",
        "%",
        "_",
        "\\",
        "^holiday",
        "(",
        "{col} : x",
        "\x00",
        "😀",
    ],
)
async def test_search_text_is_harmless(store: LibraryStore, text: str) -> None:
    videos, _ = await store.list_videos(VideoFilter(query=text), 100, "")
    for video in videos:  # whatever matches, matches as plain words
        assert video.path in LIBRARY
    assert await paths_of(store, VideoFilter()) == sorted(LIBRARY)  # and nothing was harmed


async def test_pages_cover_everything_once(store: LibraryStore) -> None:
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        videos, token = await store.list_videos(VideoFilter(), 2, token)
        seen += [v.path for v in videos]
        pages += 1
        if not token:
            break
    assert seen == sorted(LIBRARY) and pages == 3


async def test_page_token_errors(store: LibraryStore) -> None:
    _, token = await store.list_videos(VideoFilter(), 2, "")
    with pytest.raises(InvalidArgument, match="different filters"):
        await store.list_videos(VideoFilter(video_codec="h264"), 2, token)
    for bad in ("garbage!", "eyJ4IjoxfQ", token[:-3]):
        with pytest.raises(InvalidArgument, match="page_token"):
            await store.list_videos(VideoFilter(), 2, bad)
    with pytest.raises(InvalidArgument, match="page_size"):
        await store.list_videos(VideoFilter(), -1, "")
    # Forged positions no database can take: a lone surrogate, an integer beyond 64 bits, the wrong types.
    with pytest.raises(InvalidArgument, match="page_token"):
        await store.list_videos(VideoFilter(), 2, page_token.encode(["\ud800"], VideoFilter().fingerprint()))
    for position in (2**64, -1, True, "7"):
        forged = page_token.encode([position], page_token.fingerprint(["scan_errors", "job-1"]))
        with pytest.raises(InvalidArgument, match="page_token"):
            await store.list_scan_errors("job-1", 2, forged)
    videos, _ = await store.list_videos(VideoFilter(), 5000, "")  # capped, not refused
    assert len(videos) == len(LIBRARY)


async def test_get_video_by_id_and_path(store: LibraryStore) -> None:
    by_path = await store.get_video(path="/m/b/Café crème.mov")
    assert by_path.file_name == "Café crème.mov"
    assert by_path.video is not None and by_path.video.codec == "av1"
    assert by_path.audio == (AudioInfo("aac", 2, 48000, "eng"),)
    assert by_path.subtitle_languages == ("fra",)
    assert await store.get_video(video_id=by_path.id) == by_path
    for kwargs in (
        {"video_id": "999999"},
        {"video_id": "abc"},
        {"video_id": "²"},
        {"video_id": "\u0661"},
        {"path": "/m/a/broken.mp4"},
        {"path": "/x"},
    ):
        with pytest.raises(NotFound):
            await store.get_video(**kwargs)  # type: ignore[arg-type]


async def test_missing_flag_and_unmissing(store: LibraryStore) -> None:
    await store.mark_missing(["/m/a/holiday beach.mp4"])
    assert "/m/a/holiday beach.mp4" not in await paths_of(store, VideoFilter())
    assert "/m/a/holiday beach.mp4" in await paths_of(store, VideoFilter(include_missing=True))
    assert (await store.get_video(path="/m/a/holiday beach.mp4")).missing
    known = await store.load_known("/m/a", recursive=True)
    assert known["/m/a/holiday beach.mp4"] == ("/m/a/holiday beach.mp4", 1000, 1, 1)  # (path, size, mtime, missing)
    assert known["/m/a/broken.mp4"] == ("/m/a/broken.mp4", 10, 1, 0)  # failed probes are known too
    assert set(known) == {p for p in [*LIBRARY, "/m/a/broken.mp4"] if p.startswith("/m/a/")}
    await store.write_batch(unmissing=["/m/a/holiday beach.mp4"])
    assert not (await store.get_video(path="/m/a/holiday beach.mp4")).missing


async def test_load_known_not_recursive(store: LibraryStore) -> None:
    known = await store.load_known("/m/a", recursive=False)
    assert set(known) == {"/m/a/holiday beach.mp4", "/m/a/holiday_ski-2023.mkv", "/m/a/broken.mp4"}


async def test_reprobe_updates_in_place(store: LibraryStore) -> None:
    before = await store.get_video(path="/m/a/sub/birthday.mp4")
    await store.write_batch([ProbedFile("/m/a/sub/birthday.mp4", 2000, 2, info("vp9", 1440, 30))])
    after = await store.get_video(path="/m/a/sub/birthday.mp4")
    assert after.id == before.id and after.create_time == before.create_time
    assert (after.size, after.mtime_ns) == (2000, 2) and after.video is not None and after.video.height == 1440
    assert await paths_of(store, VideoFilter(query="birthday")) == ["/m/a/sub/birthday.mp4"]  # index not duplicated


async def test_scan_errors_pages_and_delete(store: LibraryStore) -> None:
    now = time.time()
    await store.write_batch(
        errors=[ScanErrorRecord("job-1", f"/m/e/{i}.mp4", ProbeErrorKind.PROBE_FAILED, "bad", now) for i in range(5)]
        + [ScanErrorRecord("job-1", "/m/e/0.mp4", ProbeErrorKind.PROBE_FAILED, "dup", now)]  # same path: ignored
        + [ScanErrorRecord("job-2", "/m/e/x.mp4", ProbeErrorKind.PROBE_TIMEOUT, "slow", now)]
    )
    got: list[str] = []
    token = ""
    while True:
        errors, token = await store.list_scan_errors("job-1", 2, token)
        got += [e.path for e in errors]
        if not token:
            break
    assert got == [f"/m/e/{i}.mp4" for i in range(5)]
    _, token = await store.list_scan_errors("job-1", 2, "")
    with pytest.raises(InvalidArgument):
        await store.list_scan_errors("job-2", 2, token)
    await store.delete_scan_errors("job-1")
    assert (await store.list_scan_errors("job-1", 10, ""))[0] == []
    assert len((await store.list_scan_errors("job-2", 10, ""))[0]) == 1
