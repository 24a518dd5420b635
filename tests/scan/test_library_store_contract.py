"""The LibraryStore contract, run against every implementation (the `library_store` fixture, tests/scan/conftest.py):
filters, text search with hostile text, pages and page tokens, incremental rows (what load_known reports, rows
rewritten in place), missing and back, broken files (status filters, failure reason and kind, when last tried),
scan errors per job.

Only the protocol is used here; what one implementation does inside (SQLite's FTS5 query) is tested beside it."""

from __future__ import annotations

import time

import pytest

from reelscan.limits import MAX_PAGE_SIZE
from reelscan.service.errors import InvalidArgument, NotFound
from reelscan.service.jobs import page_token
from reelscan.service.scan.library_model import (
    DEFAULT_PAGE_SIZE,
    ProbedFile,
    ScanErrorRecord,
    Video,
    VideoFilter,
    VideoStatus,
    library_path,
)
from reelscan.service.scan.library_store import LibraryStore
from reelscan.service.scan.media_info import (
    AudioInfo,
    Chapter,
    MasteringDisplay,
    MediaInfo,
    ProbeErrorKind,
    SubtitleInfo,
    VideoInfo,
)


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


HOLIDAYS = ["/m/a/holiday beach.mp4", "/m/a/holiday_ski-2023.mkv", "/m/ab/other holiday.mp4"]


# What each text matches when it is taken as plain words (an operator or wildcard read as such would match more, or
# other files): "AND", "NOT", "NEAR", "OR" and "file" are words no file name here holds; "%", "_", "(" hold none.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'; DROP TABLE videos; --", []),
        ('"', []),
        ('" OR 1=1 --', []),
        ("holiday*", HOLIDAYS),
        ("NEAR(holiday beach)", []),
        ("holiday AND NOT beach", []),
        ("file_name:holiday", []),
        ("%", []),
        ("_", []),
        ("\\", []),
        ("^holiday", HOLIDAYS),  # FTS5's "first token" operator would drop "other holiday"
        ("(", []),
        ("{col} : x", []),
        ("\x00", []),
        ("😀", []),
    ],
)
async def test_search_text_is_harmless(store: LibraryStore, text: str, expected: list[str]) -> None:
    videos, _ = await store.list_videos(VideoFilter(query=text), 100, "")
    for video in videos:  # whatever matches, matches as plain words
        assert video.path in LIBRARY
    assert [v.path for v in videos] == expected
    assert await paths_of(store, VideoFilter()) == sorted(LIBRARY)  # and nothing was harmed


async def test_metacharacters_in_file_names_match_as_plain_text(store: LibraryStore) -> None:
    percent, quoted, underscore = "/m/x/50% off (final).mp4", '/m/x/it\'s "quoted" [v2].mkv', "/m/x/a_b.mp4"
    await store.write_batch([ProbedFile(p, 1000, 1, info()) for p in (percent, quoted, underscore)])
    for text, expected in [
        ("50%", [percent]),
        ("(final)", [percent]),
        ("off*", [percent]),
        ("it's", [quoted]),
        ('"quoted"', [quoted]),
        ("[v2]", [quoted]),
        ("a_b", [underscore]),
        ("%", []),  # a LIKE wildcard would match every file
        ("_", []),
    ]:
        assert await paths_of(store, VideoFilter(query=text)) == expected, text


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
        {"path": "/x"},
        {"path": "/m/a"},  # a directory of entries is not an entry
    ):
        with pytest.raises(NotFound):
            await store.get_video(**kwargs)  # type: ignore[arg-type]
    # A file whose probe failed is in the library: found, as a broken file, by path and by id.
    broken = await store.get_video(path="/m/a/broken.mp4")
    assert (broken.status, broken.failed, broken.failure_reason) == (VideoStatus.FAILED, True, "Invalid data")
    assert await store.get_video(video_id=broken.id) == broken
    assert by_path.status is VideoStatus.OK and not by_path.failed and by_path.failure_reason == ""


async def test_missing_flag_and_unmissing(store: LibraryStore) -> None:
    await store.mark_missing(["/m/a/holiday beach.mp4"])
    assert "/m/a/holiday beach.mp4" not in await paths_of(store, VideoFilter())
    assert "/m/a/holiday beach.mp4" in await paths_of(store, VideoFilter(include_missing=True))
    assert (await store.get_video(path="/m/a/holiday beach.mp4")).missing
    known = await store.load_known("/m/a", recursive=True)
    # (path, size, mtime, missing, failed)
    assert known["/m/a/holiday beach.mp4"] == ("/m/a/holiday beach.mp4", 1000, 1, 1, 0)
    assert known["/m/a/broken.mp4"] == ("/m/a/broken.mp4", 10, 1, 0, 1)  # failed probes are known too, as such
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


# --- added with the contract: what the tests above left open ------------------------------------------------------


async def test_path_prefix_naming_a_file_and_filters_combined(store: LibraryStore) -> None:
    assert await paths_of(store, VideoFilter(path_prefix="/m/a/sub/birthday.mp4")) == ["/m/a/sub/birthday.mp4"]
    assert await paths_of(store, VideoFilter(path_prefix="/m/a/sub/birth")) == []  # a component, not a string
    assert await paths_of(store, VideoFilter(path_prefix="/nowhere")) == []
    assert await paths_of(store, VideoFilter(video_codec="h264", min_height=1080)) == ["/m/a/holiday beach.mp4"]
    assert await paths_of(store, VideoFilter(path_prefix="/m/a", query="holiday", max_duration_us=60_000_000)) == [
        "/m/a/holiday_ski-2023.mkv"
    ]
    # The bounds are inclusive.
    assert await paths_of(store, VideoFilter(min_duration_us=60_000_000, max_duration_us=60_000_000)) == [
        "/m/a/holiday_ski-2023.mkv"
    ]
    assert await paths_of(store, VideoFilter(min_height=720, video_codec="VP9")) == ["/m/a/sub/birthday.mp4"]


async def test_every_field_round_trips(library_store: LibraryStore) -> None:
    video = VideoInfo("HEVC", "Main 10", 3840, 2160, 23.976, "yuv420p10le", 10, 90, "smpte2084", "bt2020", True)
    audio = (AudioInfo("eac3", 6, 48000, "eng"), AudioInfo("aac", 2, 44100, ""))
    full = MediaInfo(5_000_000, 7, "matroska,webm", 5_400_123_456, 12_345_678, video, audio, 3, ("eng", "fra", ""), 42)
    sound = MediaInfo(10, 8, "mp3", None, 0, None)  # no video stream, no duration, no tags
    before = time.time()
    await library_store.write_batch(
        [ProbedFile("/m/r/Full Movie.mkv", 5_000_000, 7, full), ProbedFile("/m/r/sound.mp4", 10, 8, sound)]
    )
    after = time.time()
    got = await library_store.get_video(path="/m/r/Full Movie.mkv")
    assert got == Video(
        id=got.id,
        path="/m/r/Full Movie.mkv",
        file_name="Full Movie.mkv",
        container_format="matroska,webm",
        size=5_000_000,
        mtime_ns=7,
        duration_us=5_400_123_456,
        bit_rate=12_345_678,
        video=VideoInfo("hevc", "Main 10", 3840, 2160, 23.976, "yuv420p10le", 10, 90, "smpte2084", "bt2020", True),
        audio=audio,
        subtitle_count=3,
        subtitle_languages=("eng", "fra", ""),
        creation_time_us=42,
        missing=False,
        probe_time=got.probe_time,
        create_time=got.create_time,
    )
    assert before <= got.create_time <= got.probe_time <= after
    bare = await library_store.get_video(path="/m/r/sound.mp4")
    assert (bare.video, bare.duration_us, bare.audio, bare.subtitle_languages, bare.creation_time_us) == (
        None,
        None,
        (),
        (),
        None,
    )
    assert (bare.file_name, bare.container_format, bare.size, bare.mtime_ns) == ("sound.mp4", "mp3", 10, 8)
    assert bare.id != got.id
    # A file without a video stream or a duration is left out by the filters on them.
    assert await paths_of(library_store, VideoFilter(min_height=1)) == ["/m/r/Full Movie.mkv"]
    assert await paths_of(library_store, VideoFilter(min_duration_us=0)) == ["/m/r/Full Movie.mkv"]
    assert await paths_of(library_store, VideoFilter(video_codec="hevc")) == ["/m/r/Full Movie.mkv"]


async def test_get_video_needs_an_id_or_a_path(store: LibraryStore) -> None:
    with pytest.raises(InvalidArgument):
        await store.get_video()


async def test_filtered_pages_cover_the_filtered_set_once(store: LibraryStore) -> None:
    flt = VideoFilter(query="holiday")
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        videos, token = await store.list_videos(flt, 1, token)
        seen += [v.path for v in videos]
        pages += 1
        if not token:
            break
    assert seen == HOLIDAYS and pages == 3


async def test_page_size_default_and_cap(library_store: LibraryStore) -> None:
    count = MAX_PAGE_SIZE + 1
    now = time.time()
    await library_store.write_batch(
        [ProbedFile(f"/m/many/{i:05}.mp4", 1000, 1, info()) for i in range(count)],
        [
            ScanErrorRecord("job-1", f"/m/many/{i:05}.mp4", ProbeErrorKind.PROBE_FAILED, "bad", now)
            for i in range(count)
        ],
    )
    for requested, expected in ((0, DEFAULT_PAGE_SIZE), (5000, MAX_PAGE_SIZE), (MAX_PAGE_SIZE + 1, MAX_PAGE_SIZE)):
        videos, token = await library_store.list_videos(VideoFilter(), requested, "")
        assert len(videos) == expected and token
        errors, token = await library_store.list_scan_errors("job-1", requested, "")
        assert len(errors) == expected and token
    with pytest.raises(InvalidArgument, match="page_size"):
        await library_store.list_scan_errors("job-1", -1, "")


async def test_tokens_from_elsewhere_are_refused(store: LibraryStore) -> None:
    now = time.time()
    await store.write_batch(
        errors=[ScanErrorRecord("job-1", f"/m/e/{i}.mp4", ProbeErrorKind.PROBE_FAILED, "bad", now) for i in range(3)]
    )
    _, videos_token = await store.list_videos(VideoFilter(), 2, "")
    _, errors_token = await store.list_scan_errors("job-1", 2, "")
    assert videos_token and errors_token
    with pytest.raises(InvalidArgument, match="page_token"):
        await store.list_videos(VideoFilter(), 2, errors_token)
    with pytest.raises(InvalidArgument, match="page_token"):
        await store.list_scan_errors("job-1", 2, videos_token)
    with pytest.raises(InvalidArgument, match="page_token"):
        await store.list_scan_errors("job-1", 2, "not a token")


async def test_token_after_continues_right_after_the_item(store: LibraryStore) -> None:
    everything, _ = await store.list_videos(VideoFilter(), 100, "")
    token = store.videos_token_after(VideoFilter(), everything[1])
    rest, next_token = await store.list_videos(VideoFilter(), 100, token)
    assert rest == everything[2:] and next_token == ""
    with pytest.raises(InvalidArgument, match="different filters"):
        await store.list_videos(VideoFilter(), 100, store.videos_token_after(VideoFilter(min_height=1), everything[1]))
    now = time.time()
    await store.write_batch(
        errors=[ScanErrorRecord("job-1", f"/m/e/{i}.mp4", ProbeErrorKind.PROBE_FAILED, "bad", now) for i in range(4)]
    )
    errors, _ = await store.list_scan_errors("job-1", 100, "")
    rest_errors, next_token = await store.list_scan_errors(
        "job-1", 100, store.scan_errors_token_after("job-1", errors[0])
    )
    assert rest_errors == errors[1:] and next_token == ""
    with pytest.raises(InvalidArgument):
        await store.list_scan_errors("job-2", 100, store.scan_errors_token_after("job-1", errors[0]))


async def test_load_known_reports_the_last_stored_size_and_mtime(store: LibraryStore) -> None:
    everything = await store.load_known("/", recursive=True)
    assert everything == {
        **{p: (p, 1000, 1, 0, 0) for p in LIBRARY},
        "/m/a/broken.mp4": ("/m/a/broken.mp4", 10, 1, 0, 1),
    }
    await store.write_batch([ProbedFile("/m/a/sub/birthday.mp4", 2000, 2, info("vp9", 1440, 30))])
    await store.write_batch([ProbedFile("/m/a/holiday beach.mp4", 3000, 3, None, "now broken")])
    known = await store.load_known("/m/a/", recursive=True)  # a trailing slash changes nothing
    assert known == await store.load_known("/m/a", recursive=True)
    assert known["/m/a/sub/birthday.mp4"] == ("/m/a/sub/birthday.mp4", 2000, 2, 0, 0)
    assert known["/m/a/holiday beach.mp4"] == ("/m/a/holiday beach.mp4", 3000, 3, 0, 1)  # failed now, still known
    await store.write_batch([ProbedFile("/m/a/broken.mp4", 12, 4, info())])  # fixed
    assert (await store.load_known("/m/a", recursive=False))["/m/a/broken.mp4"] == ("/m/a/broken.mp4", 12, 4, 0, 0)
    assert await store.load_known("/m/a/sub", recursive=False) == {
        "/m/a/sub/birthday.mp4": ("/m/a/sub/birthday.mp4", 2000, 2, 0, 0)
    }
    assert await store.load_known("/nowhere", recursive=True) == {}


async def test_load_known_takes_a_file_system_root(library_store: LibraryStore) -> None:
    root = "/m/caf\udce9"  # a directory name that is not UTF-8, as os.fsdecode hands it over
    stored = library_path(root + "/x.mp4")
    assert stored == "/m/caf\\xe9/x.mp4"
    await library_store.write_batch([ProbedFile(stored, 1, 2, info())])
    assert await library_store.load_known(root, recursive=True) == {stored: (stored, 1, 2, 0, 0)}
    assert await library_store.load_known(root, recursive=False) == {stored: (stored, 1, 2, 0, 0)}


async def test_unchanged_rows_stay_as_they_were(store: LibraryStore) -> None:
    before = await store.get_video(path="/m/a/holiday beach.mp4")
    now = time.time()
    await store.write_batch(
        [ProbedFile("/m/a/new.mp4", 5, 5, info())],
        [ScanErrorRecord("job-1", "/m/a/broken.mp4", ProbeErrorKind.PROBE_FAILED, "bad", now)],
        ["/m/a/holiday beach.mp4"],  # not missing: un-marking it changes nothing
    )
    await store.write_batch()  # nothing to write
    assert await store.get_video(path="/m/a/holiday beach.mp4") == before
    assert await paths_of(store, VideoFilter()) == sorted([*LIBRARY, "/m/a/new.mp4"])


async def test_a_failed_reprobe_makes_the_video_broken_and_a_good_one_brings_it_back(store: LibraryStore) -> None:
    path = "/m/a/holiday beach.mp4"
    before = await store.get_video(path=path)
    await store.write_batch([ProbedFile(path, 1001, 2, None, "Invalid data")])
    broken = await store.get_video(path=path)
    assert (broken.id, broken.create_time, broken.status) == (before.id, before.create_time, VideoStatus.FAILED)
    assert (broken.video, broken.duration_us, broken.container_format, broken.audio) == (None, None, "", ())
    assert await store.get_video(video_id=before.id) == broken
    assert path not in await paths_of(store, VideoFilter(include_missing=True))  # not a video in the default list
    assert path not in await paths_of(store, VideoFilter(query="beach"))
    assert path in await paths_of(store, VideoFilter(query="beach", statuses=frozenset({VideoStatus.FAILED})))
    await store.write_batch([ProbedFile(path, 1002, 3, info("av1", 720, 5))])
    again = await store.get_video(path=path)
    assert (again.id, again.create_time) == (before.id, before.create_time)  # the same entry, rewritten in place
    assert (again.size, again.mtime_ns) == (1002, 3) and again.video is not None and again.video.codec == "av1"
    assert (again.status, again.failed, again.failure_reason, again.failure_kind) == (VideoStatus.OK, False, "", None)
    # And a file whose earlier probe failed becomes a video once a probe succeeds.
    await store.write_batch([ProbedFile("/m/a/broken.mp4", 11, 2, info())])
    fixed = await store.get_video(path="/m/a/broken.mp4")
    assert (fixed.size, fixed.status, fixed.failure_reason) == (11, VideoStatus.OK, "")
    assert "/m/a/broken.mp4" in await paths_of(store, VideoFilter())
    assert await paths_of(store, VideoFilter(statuses=frozenset({VideoStatus.FAILED}))) == []


async def test_a_probe_of_a_missing_file_clears_missing(store: LibraryStore) -> None:
    path = "/m/a/holiday beach.mp4"
    await store.mark_missing([path])
    assert (await store.get_video(path=path)).missing
    await store.write_batch([ProbedFile(path, 2000, 2, info())])  # back, changed: probed again
    assert not (await store.get_video(path=path)).missing
    assert path in await paths_of(store, VideoFilter())
    assert (await store.load_known("/m/a", recursive=False))[path] == (path, 2000, 2, 0, 0)


async def test_mark_missing_in_chunks_ignores_unknown_paths(store: LibraryStore) -> None:
    await store.mark_missing((p for p in [*sorted(LIBRARY), "/m/unknown.mp4"]), chunk=2)  # any iterable, once
    assert await paths_of(store, VideoFilter()) == []
    videos, _ = await store.list_videos(VideoFilter(include_missing=True), 100, "")
    assert [v.path for v in videos] == sorted(LIBRARY) and all(v.missing for v in videos)
    known = await store.load_known("/m", recursive=True)
    assert {p: k[3] for p, k in known.items()} == {**dict.fromkeys(LIBRARY, 1), "/m/a/broken.mp4": 0}
    assert "/m/unknown.mp4" not in known
    await store.mark_missing([])  # nothing to do


async def test_scan_errors_keep_their_fields_in_recorded_order(library_store: LibraryStore) -> None:
    first = ScanErrorRecord("job-1", "/m/z.mp4", ProbeErrorKind.PROBE_TIMEOUT, "took too long", 1_700_000_000.5)
    second = ScanErrorRecord("job-1", "/m/a.mp4", ProbeErrorKind.UNREADABLE, "permission denied", 1_700_000_001.25)
    other = ScanErrorRecord("job-2", "/m/z.mp4", ProbeErrorKind.PROBE_CRASHED, "worker died", 1_700_000_002.0)
    await library_store.write_batch(errors=[first])
    await library_store.write_batch(errors=[other, second])
    errors, token = await library_store.list_scan_errors("job-1", 10, "")
    assert token == ""
    assert [(e.job_id, e.path, e.kind, e.reason, e.create_time) for e in errors] == [
        ("job-1", "/m/z.mp4", ProbeErrorKind.PROBE_TIMEOUT, "took too long", 1_700_000_000.5),  # recorded first
        ("job-1", "/m/a.mp4", ProbeErrorKind.UNREADABLE, "permission denied", 1_700_000_001.25),
    ]
    assert all(isinstance(e.kind, ProbeErrorKind) for e in errors)
    assert 0 < errors[0].id < errors[1].id
    job_2, _ = await library_store.list_scan_errors("job-2", 10, "")
    assert [(e.path, e.kind) for e in job_2] == [("/m/z.mp4", ProbeErrorKind.PROBE_CRASHED)]
    assert await library_store.list_scan_errors("job-unknown", 10, "") == ([], "")
    await library_store.delete_scan_errors("job-unknown")  # nothing to delete
    await library_store.delete_scan_errors("job-2")
    assert await library_store.list_scan_errors("job-2", 10, "") == ([], "")
    assert len((await library_store.list_scan_errors("job-1", 10, ""))[0]) == 2


# --- broken files are part of the library: statuses, failure reasons and kinds, when last tried -------------------

OK, FAILED, MISSING = VideoStatus.OK, VideoStatus.FAILED, VideoStatus.MISSING
BROKEN, CAFE, GONE_BROKEN = "/m/a/broken.mp4", "/m/b/Café crème.mov", "/m/b/gone broken.mkv"
OK_ON_DISK = sorted(set(LIBRARY) - {CAFE})


def statuses(*values: VideoStatus) -> frozenset[VideoStatus]:
    return frozenset(values)


@pytest.fixture
async def mixed(store: LibraryStore) -> LibraryStore:
    """`store` (LIBRARY and BROKEN) with an entry of each missing kind: a video gone from disk and a broken one."""
    await store.write_batch([ProbedFile(GONE_BROKEN, 7, 1, None, "moov atom not found", ProbeErrorKind.PROBE_FAILED)])
    await store.mark_missing([CAFE, GONE_BROKEN])
    return store


async def test_status_filters_select_entries_by_status(mixed: LibraryStore) -> None:
    assert await paths_of(mixed, VideoFilter()) == OK_ON_DISK  # the default: OK entries only
    assert await paths_of(mixed, VideoFilter(statuses=statuses(OK))) == OK_ON_DISK
    assert await paths_of(mixed, VideoFilter(statuses=statuses(FAILED))) == [BROKEN]
    assert await paths_of(mixed, VideoFilter(statuses=statuses(MISSING))) == [CAFE, GONE_BROKEN]
    assert await paths_of(mixed, VideoFilter(statuses=statuses(OK, FAILED))) == sorted([*OK_ON_DISK, BROKEN])
    assert await paths_of(mixed, VideoFilter(statuses=statuses(FAILED, MISSING))) == [BROKEN, CAFE, GONE_BROKEN]
    assert await paths_of(mixed, VideoFilter(statuses=statuses(OK, MISSING))) == sorted([*LIBRARY, GONE_BROKEN])
    everything = sorted([*LIBRARY, BROKEN, GONE_BROKEN])
    assert await paths_of(mixed, VideoFilter(statuses=statuses(OK, FAILED, MISSING))) == everything
    # include_missing: with no statuses, the missing videos as before (not broken files gone too); with statuses,
    # MISSING added to them.
    assert await paths_of(mixed, VideoFilter(include_missing=True)) == sorted(LIBRARY)
    assert await paths_of(mixed, VideoFilter(statuses=statuses(FAILED), include_missing=True)) == [
        BROKEN,
        CAFE,
        GONE_BROKEN,
    ]
    # Each entry says which status it has; a broken file gone from disk is MISSING and keeps why it was broken.
    videos, _ = await mixed.list_videos(VideoFilter(statuses=statuses(OK, FAILED, MISSING)), 100, "")
    assert {v.path: v.status for v in videos} == {
        **dict.fromkeys(OK_ON_DISK, OK),
        BROKEN: FAILED,
        CAFE: MISSING,
        GONE_BROKEN: MISSING,
    }
    gone = next(v for v in videos if v.path == GONE_BROKEN)
    assert (gone.missing, gone.failed, gone.failure_reason, gone.failure_kind) == (
        True,
        True,
        "moov atom not found",
        ProbeErrorKind.PROBE_FAILED,
    )
    cafe = next(v for v in videos if v.path == CAFE)
    assert (cafe.missing, cafe.failed, cafe.failure_reason, cafe.failure_kind) == (True, False, "", None)
    # Back on disk, unchanged: a broken file is FAILED again, a video OK.
    await mixed.write_batch(unmissing=[CAFE, GONE_BROKEN])
    assert await paths_of(mixed, VideoFilter(statuses=statuses(FAILED))) == [BROKEN, GONE_BROKEN]
    assert await paths_of(mixed, VideoFilter(statuses=statuses(MISSING))) == []


async def test_failed_entries_carry_reason_kind_and_when_last_tried(library_store: LibraryStore) -> None:
    path = "/m/f/hang.mp4"
    reason = "probe timed out after 10 s: 'ü' \"quoted\"\nsecond line"
    before = time.time()
    await library_store.write_batch([ProbedFile(path, 5, 9, None, reason, ProbeErrorKind.PROBE_TIMEOUT)])
    after = time.time()
    got = await library_store.get_video(path=path)
    assert got == Video(
        id=got.id,
        path=path,
        file_name="hang.mp4",
        container_format="",
        size=5,
        mtime_ns=9,
        duration_us=None,
        bit_rate=0,
        video=None,
        audio=(),
        subtitle_count=0,
        subtitle_languages=(),
        creation_time_us=None,
        missing=False,
        probe_time=got.probe_time,
        create_time=got.create_time,
        failed=True,
        failure_reason=reason,
        failure_kind=ProbeErrorKind.PROBE_TIMEOUT,
    )
    assert got.status is VideoStatus.FAILED
    assert before <= got.create_time <= got.probe_time <= after  # probe_time: when the probe was last tried
    listed, _ = await library_store.list_videos(VideoFilter(statuses=statuses(FAILED)), 10, "")
    assert listed == [got]
    # The file changed and its probe was tried again, failing otherwise: the entry keeps its id and tells the latest.
    await library_store.write_batch([ProbedFile(path, 6, 10, None, "worker died", ProbeErrorKind.PROBE_CRASHED)])
    again = await library_store.get_video(path=path)
    assert (again.id, again.create_time, again.size, again.mtime_ns) == (got.id, got.create_time, 6, 10)
    assert (again.failure_reason, again.failure_kind) == ("worker died", ProbeErrorKind.PROBE_CRASHED)
    assert again.probe_time >= after
    # A scan that finds it unchanged writes nothing (it reads load_known), so "last tried" stays as it was.
    assert (await library_store.load_known("/m/f", recursive=False))[path] == (path, 6, 10, 0, 1)
    assert (await library_store.get_video(path=path)).probe_time == again.probe_time


async def test_status_filters_combine_with_the_other_filters(mixed: LibraryStore) -> None:
    broken_or_gone = statuses(FAILED, MISSING)
    assert await paths_of(mixed, VideoFilter(statuses=broken_or_gone, path_prefix="/m/b")) == [CAFE, GONE_BROKEN]
    assert await paths_of(mixed, VideoFilter(statuses=broken_or_gone, path_prefix=BROKEN)) == [BROKEN]
    # File names are searchable whatever the status.
    assert await paths_of(mixed, VideoFilter(statuses=broken_or_gone, query="broken")) == [BROKEN, GONE_BROKEN]
    # Filters on media fields need fields a broken file does not have.
    assert await paths_of(mixed, VideoFilter(statuses=broken_or_gone, video_codec="av1")) == [CAFE]
    assert await paths_of(mixed, VideoFilter(statuses=broken_or_gone, min_height=1)) == [CAFE]
    assert await paths_of(mixed, VideoFilter(statuses=broken_or_gone, min_duration_us=0)) == [CAFE]
    assert await paths_of(mixed, VideoFilter(statuses=broken_or_gone, max_duration_us=10**12)) == [CAFE]


async def test_status_filters_page_and_tokens_keep_them(mixed: LibraryStore) -> None:
    flt = VideoFilter(statuses=statuses(FAILED, MISSING))
    seen: list[str] = []
    token = ""
    while True:
        videos, token = await mixed.list_videos(flt, 1, token)
        seen += [v.path for v in videos]
        if not token:
            break
    assert seen == [BROKEN, CAFE, GONE_BROKEN]
    _, token = await mixed.list_videos(flt, 1, "")
    for other in (VideoFilter(), VideoFilter(statuses=statuses(FAILED)), VideoFilter(include_missing=True)):
        with pytest.raises(InvalidArgument, match="different filters"):
            await mixed.list_videos(other, 1, token)
    # A listing without statuses has the fingerprint it had before they existed: its tokens stay valid.
    assert VideoFilter(include_missing=True).fingerprint() == page_token.fingerprint(["", "", None, None, 0, "", True])


# --- the metadata of probe version 2: stored whole, and filtered on ---------------------------------------------


def rich_info(
    container: str,
    *,
    width: int = 1920,
    audio_langs: tuple[str, ...] = ("eng",),
    sub_langs: tuple[str, ...] = (),
    hdr_format: str = "sdr",
    field_order: str = "progressive",
) -> MediaInfo:
    transfer = {"hdr10": "smpte2084", "hlg": "arib-std-b67", "dolby_vision": "smpte2084"}.get(hdr_format, "")
    mastering = MasteringDisplay(0.708, 0.292, 0.17, 0.797, 0.131, 0.046, 0.3127, 0.329, 0.005, 1000.0)
    video = VideoInfo(
        "hevc", "Main 10", width, width * 9 // 16, 23.976, "yuv420p10le", 10, 90, transfer, "bt2020",
        bool(transfer), color_space="bt2020nc", color_range="tv", hdr_format=hdr_format,
        mastering_display=mastering if hdr_format == "hdr10" else None, max_cll=1000, max_fall=400,
        sample_aspect_ratio="32:27", display_aspect_ratio="16:9", display_width=width * 9 // 16,
        display_height=width * 32 // 27, field_order=field_order, bit_rate=5_000_000, frame_count=1234,
    )  # fmt: skip
    audio = tuple(
        AudioInfo("ac3", 6, 48000, lang, "5.1(side)", 448_000, "", f"{lang} 5.1", ("default",) if i == 0 else ())
        for i, lang in enumerate(audio_langs)
    )
    subs = tuple(SubtitleInfo("subrip", lang, f"{lang} forced", ("forced",), "text") for lang in sub_langs)
    return MediaInfo(
        size=1000,
        mtime_ns=1,
        container_format=container,
        duration_us=60_000_000,
        bit_rate=6_000_000,
        video=video,
        audio=audio,
        subtitle_count=len(subs),
        subtitle_languages=sub_langs,
        subtitles=subs,
        title="A \"title\" with 'quotes' é",
        has_cover_art=True,
        chapter_count=3,
        chapters=(Chapter(0, 1_000_000, "Intro"), Chapter(1_000_000, 2_000_000, "")),
    )


RICH = {
    "/r/film.mkv": rich_info("matroska,webm", audio_langs=("eng", "FRA"), sub_langs=("eng", "deu"), hdr_format="hdr10"),
    "/r/phone.mp4": rich_info("mov,mp4,m4a,3gp,3g2,mj2", width=1280, hdr_format="sdr"),
    "/r/tv.ts": rich_info("mpegts", width=720, audio_langs=("deu",), field_order="tt", hdr_format="hlg"),
    "/r/dv.mp4": rich_info("mov,mp4,m4a,3gp,3g2,mj2", width=3840, sub_langs=("fra",), hdr_format="dolby_vision"),
}


@pytest.fixture
async def rich(library_store: LibraryStore) -> LibraryStore:
    await library_store.write_batch(
        [ProbedFile(p, 1000, 1, i) for p, i in RICH.items()] + [ProbedFile("/r/broken.mkv", 10, 1, None, "bad")]
    )
    return library_store


async def test_every_field_of_probe_version_2_round_trips(rich: LibraryStore) -> None:
    for path, expected in RICH.items():
        video = await rich.get_video(path=path)
        assert video.video == expected.video, path
        assert video.audio == expected.audio, path
        assert (video.subtitles, video.subtitle_languages, video.subtitle_count) == (
            expected.subtitles,
            expected.subtitle_languages,
            expected.subtitle_count,
        )
        assert (video.title, video.has_cover_art, video.chapter_count, video.chapters) == (
            expected.title,
            True,
            3,
            expected.chapters,
        )
    listed, _ = await rich.list_videos(VideoFilter(path_prefix="/r"), 10, "")
    assert [v.video for v in listed] == [RICH[v.path].video for v in listed]


async def test_rows_written_now_are_current(rich: LibraryStore) -> None:
    """load_known reports true sizes for rows of this probe version (only older rows report -1: see the
    migration tests)."""
    known = await rich.load_known("/r", recursive=True)
    assert {p: k[1] for p, k in known.items()} == {**dict.fromkeys(RICH, 1000), "/r/broken.mkv": 10}


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (VideoFilter(container="matroska"), ["/r/film.mkv"]),
        (VideoFilter(container="mp4"), ["/r/dv.mp4", "/r/phone.mp4"]),  # a whole name of FFmpeg's list
        (VideoFilter(container="mov"), ["/r/dv.mp4", "/r/phone.mp4"]),
        (VideoFilter(container="mpegts"), ["/r/tv.ts"]),
        (VideoFilter(container="mp"), []),  # not a substring match
        (VideoFilter(container="webm"), ["/r/film.mkv"]),
        (VideoFilter(audio_language="fra"), ["/r/film.mkv"]),  # stored "FRA": case-insensitive
        (VideoFilter(audio_language="deu"), ["/r/tv.ts"]),
        (VideoFilter(audio_language="eng"), ["/r/dv.mp4", "/r/film.mkv", "/r/phone.mp4"]),
        (VideoFilter(subtitle_language="deu"), ["/r/film.mkv"]),
        (VideoFilter(subtitle_language="fra"), ["/r/dv.mp4"]),
        (VideoFilter(subtitle_language="jpn"), []),
        (VideoFilter(hdr_format="hdr10"), ["/r/film.mkv"]),
        (VideoFilter(hdr_format="hlg"), ["/r/tv.ts"]),
        (VideoFilter(hdr_format="dolby_vision"), ["/r/dv.mp4"]),
        (VideoFilter(hdr_format="sdr"), ["/r/phone.mp4"]),
        (VideoFilter(min_width=1920), ["/r/dv.mp4", "/r/film.mkv"]),
        (VideoFilter(min_width=3841), []),
        (VideoFilter(interlaced=True), ["/r/tv.ts"]),
        (VideoFilter(interlaced=False), ["/r/dv.mp4", "/r/film.mkv", "/r/phone.mp4"]),
        (VideoFilter(has_subtitles=True), ["/r/dv.mp4", "/r/film.mkv"]),
        (VideoFilter(has_subtitles=False), ["/r/phone.mp4", "/r/tv.ts"]),  # not the broken file
        (VideoFilter(container="mp4", has_subtitles=True, min_width=2000), ["/r/dv.mp4"]),
        (VideoFilter(hdr_format="hdr10", statuses=frozenset({VideoStatus.FAILED})), []),
        (VideoFilter(has_subtitles=False, statuses=frozenset({VideoStatus.FAILED})), []),
    ],
)
async def test_media_filters_of_probe_version_2(rich: LibraryStore, flt: VideoFilter, expected: list[str]) -> None:
    assert await paths_of(rich, flt) == expected


async def test_new_filters_page_with_their_own_tokens(rich: LibraryStore) -> None:
    flt = VideoFilter(audio_language="eng")
    first, token = await rich.list_videos(flt, 1, "")
    assert [v.path for v in first] == ["/r/dv.mp4"] and token
    rest, _ = await rich.list_videos(flt, 10, token)
    assert [v.path for v in rest] == ["/r/film.mkv", "/r/phone.mp4"]
    with pytest.raises(InvalidArgument):
        await rich.list_videos(VideoFilter(audio_language="deu"), 10, token)  # issued for other filters
    # Tokens of listings without the new filters, issued before they existed, stay valid: same fingerprint.
    assert VideoFilter(video_codec="h264").fingerprint() == page_token.fingerprint(
        ["", "h264", None, None, 0, "", False]
    )
    assert VideoFilter(interlaced=False).fingerprint() != VideoFilter().fingerprint()
