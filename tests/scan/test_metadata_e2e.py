"""Issue 16 from the outside: a real server (SQLite and PostgreSQL; PyAV, and the ffprobe backend on SQLite) scans
the metadata corpus (tests/scan/metadata_corpus.py) with its default extensions; GetVideo and ListVideos show the
new fields, ListVideos filters on them (bad values are INVALID_ARGUMENT naming the field), scan errors say what is
wrong, and the CLI exposes the filters and prints the new fields through its escaping."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from reelscan.v1 import job_pb2, job_service_pb2, library_pb2, scan_service_pb2
from tests.client.conftest import run_cli
from tests.helpers.databases import new_database
from tests.helpers.server import ServerProcess
from tests.helpers.stubs import Stubs
from tests.media import FFMPEG, make_clip
from tests.scan.metadata_corpus import MetadataCorpus, build_metadata_corpus
from tests.scan.test_scan_e2e import status_field

CONFIGS = [("sqlite", "pyav"), ("postgresql", "pyav"), ("sqlite", "ffprobe")]
HOSTILE_TITLE = "bad\x1b]0;PWNED\x07title"


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: f"{c[0]}-{c[1]}")
def config(request: pytest.FixtureRequest) -> tuple[str, str]:
    backend, prober = request.param
    if prober == "ffprobe" and shutil.which("ffprobe") is None:
        pytest.skip("ffprobe is not on PATH (apt-get install ffmpeg)")
    return backend, prober


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, config: tuple[str, str]) -> MetadataCorpus:
    corpus = build_metadata_corpus(tmp_path_factory.mktemp(f"meta-{config[0]}-{config[1]}"))
    corpus.files["hostile"] = make_clip(corpus.directory / "hostile.mkv", title=HOSTILE_TITLE).path
    return corpus


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    root: MetadataCorpus,
    config: tuple[str, str],
) -> Iterator[ServerProcess]:
    backend, prober = config
    db = new_database(backend, request, tmp_path_factory.mktemp("db"))
    args = ["--probe-workers", "2", "--prober", prober]  # default extensions: no --extensions
    with ServerProcess(db, allow_roots=[root.directory], extra_args=args) as proc:
        yield proc


@pytest.fixture
async def stubs(server: ServerProcess) -> AsyncIterator[Stubs]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield Stubs(channel)


async def scan(stubs: Stubs, path: Path, force: bool = False) -> job_pb2.Job:
    request = scan_service_pb2.StartScanRequest(path=str(path), force=force)
    job = (await stubs.scans.StartScan(request, timeout=10)).job
    last = None
    async with asyncio.timeout(60):
        async for update in stubs.jobs.WatchJob(job_service_pb2.WatchJobRequest(job_id=job.id)):
            last = update
    assert last is not None and last.state == job_pb2.JOB_STATE_SUCCEEDED, last
    return last.job


@pytest.fixture(scope="module")
def scanned(server: ServerProcess, root: MetadataCorpus) -> job_pb2.Job:
    async def run() -> job_pb2.Job:
        async with grpc.aio.insecure_channel(server.address) as channel:
            return await scan(Stubs(channel), root.directory)

    return asyncio.run(run())


async def get(stubs: Stubs, path: Path) -> library_pb2.Video:
    response = await stubs.library.GetVideo(library_pb2.GetVideoRequest(path=str(path)), timeout=10)
    return response.video


async def names(stubs: Stubs, **fields: object) -> list[str]:
    request = library_pb2.ListVideosRequest(path_prefix="/", page_size=1000, **fields)  # type: ignore[arg-type]
    response = await stubs.library.ListVideos(request, timeout=10)
    return sorted(Path(v.path).name for v in response.videos)


async def test_default_extensions_find_every_file(stubs: Stubs, scanned: job_pb2.Job, root: MetadataCorpus) -> None:
    result = scanned.result
    assert result.discovered == len(root.files) + len(root.broken)
    assert result.failed == len(root.broken)
    camcorder = await get(stubs, root.files["camcorder"])  # CAMCORDER/00001.MTS: upper case, found
    assert camcorder.container_format == "mpegts" and camcorder.video.codec == "h264"


async def test_get_video_shows_the_new_fields(stubs: Stubs, scanned: job_pb2.Job, root: MetadataCorpus) -> None:
    film = await get(stubs, root.files["surround"])
    assert film.title == "My Film"
    (audio,) = film.audio
    assert (audio.codec, audio.channel_layout, audio.bit_rate, audio.title) == (
        "ac3",
        "5.1(side)",
        448_000,
        "Director's commentary",
    )
    assert audio.disposition.commentary and not audio.disposition.default_track
    subs = [(s.codec, s.language, s.title, s.kind) for s in film.subtitles]
    assert subs == [
        ("subrip", "eng", "English (forced)", library_pb2.SUBTITLE_KIND_TEXT),
        ("subrip", "fra", "Français SDH", library_pb2.SUBTITLE_KIND_TEXT),
    ]
    assert film.subtitles[0].disposition.forced and not film.subtitles[0].disposition.default_track
    assert film.subtitles[1].disposition.default_track and film.subtitles[1].disposition.hearing_impaired
    assert film.chapter_count == 2
    assert [(c.start.ToMicroseconds(), c.end.ToMicroseconds(), c.title) for c in film.chapters] == [
        (0, 500_000, "Intro"),
        (500_000, 1_000_000, "Main"),
    ]
    assert film.video.hdr_format == library_pb2.HDR_FORMAT_SDR

    hdr10 = (await get(stubs, root.files["hdr10"])).video
    assert hdr10.hdr_format == library_pb2.HDR_FORMAT_HDR10
    m = hdr10.mastering_display
    assert (m.red_x, m.green_y, m.white_x, m.min_luminance, m.max_luminance) == (0.708, 0.797, 0.3127, 0.005, 1000)
    assert (hdr10.max_cll, hdr10.max_fall, hdr10.color_range) == (1000, 400, "tv")
    assert (await get(stubs, root.files["hlg"])).video.hdr_format == library_pb2.HDR_FORMAT_HLG
    dv = (await get(stubs, root.files["dolby_vision"])).video
    assert dv.hdr_format == library_pb2.HDR_FORMAT_DOLBY_VISION and not dv.HasField("mastering_display")

    wide = (await get(stubs, root.files["anamorphic"])).video
    assert (wide.sample_aspect_ratio, wide.display_aspect_ratio, wide.display_width, wide.display_height) == (
        "32:27",
        "16:9",
        85,
        48,
    )
    phone = await get(stubs, root.files["rotated"])
    assert (phone.video.rotation, phone.video.display_width, phone.video.display_height) == (90, 48, 64)
    assert phone.video.frame_count == 25 and phone.video.bit_rate > 0
    assert (phone.audio[0].channel_layout, phone.audio[0].profile) == ("stereo", "LC")
    assert phone.audio[0].disposition.default_track
    if FFMPEG is None:
        print("no ffmpeg CLI (apt-get install ffmpeg): interlaced and cover-art files not made, not checked")
    else:
        interlaced = (await get(stubs, root.files["interlaced"])).video
        assert (interlaced.field_order, interlaced.interlaced) == ("tt", True)
        assert (await get(stubs, root.files["cover_art"])).has_cover_art
    assert not phone.has_cover_art


async def test_scan_errors_say_what_is_wrong(stubs: Stubs, scanned: job_pb2.Job, root: MetadataCorpus) -> None:
    request = library_pb2.ListScanErrorsRequest(job_id=scanned.id)
    errors = {e.path: e.reason for e in (await stubs.library.ListScanErrors(request, timeout=10)).errors}
    assert errors == {
        str(root.broken["empty"]): "empty file",
        str(root.broken["no_moov"]): "no moov atom (incomplete download?)",
        str(root.broken["no_media"]): "no audio or video stream",
    }


async def test_list_videos_filters(stubs: Stubs, scanned: job_pb2.Job, root: MetadataCorpus) -> None:
    # FFmpeg names WebM and Matroska alike: vp8.webm is one of them.
    mkv = ["hlg.mkv", "hostile.mkv", "surround.mkv", "vp8.webm"] + (
        ["interlaced.mkv"] if "interlaced" in root.files else []
    )
    assert await names(stubs, container="mkv") == sorted(mkv)
    assert await names(stubs, container="MATROSKA") == sorted(mkv)
    assert await names(stubs, container="mts") == ["00001.MTS"]
    assert await names(stubs, audio_language="ENG") == sorted(
        ["phone.mp4", "surround.mkv"] + (["with cover.mp4"] if "cover_art" in root.files else [])
    )
    assert await names(stubs, audio_language="deu") == ["anamorphic.mp4"]
    assert await names(stubs, subtitle_language="fra") == ["surround.mkv"]
    assert await names(stubs, has_subtitles=True) == ["surround.mkv"]
    assert "surround.mkv" not in await names(stubs, has_subtitles=False)
    assert await names(stubs, hdr_format=library_pb2.HDR_FORMAT_HDR10) == ["hdr10.mp4"]
    assert await names(stubs, hdr_format=library_pb2.HDR_FORMAT_HLG) == ["hlg.mkv"]
    assert await names(stubs, hdr_format=library_pb2.HDR_FORMAT_DOLBY_VISION) == ["dolby_vision.mp4"]
    assert await names(stubs, min_width=72) == ["anamorphic.mp4", "hdr10.mp4"]
    if "interlaced" in root.files:
        assert await names(stubs, interlaced=True) == ["interlaced.mkv"]
        assert "interlaced.mkv" not in await names(stubs, interlaced=False)
    assert await names(stubs, container="mp4", min_width=90) == ["hdr10.mp4"]
    assert "vp8.webm" in await names(stubs, container="webm")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"container": "mp4;drop"}, "container"),
        ({"container": "x" * 33}, "container"),
        ({"audio_language": "e n"}, "audio_language"),
        ({"subtitle_language": "x" * 17}, "subtitle_language"),
        ({"hdr_format": 99}, "hdr_format"),
        ({"min_width": -1}, "min_width"),
    ],
)
async def test_bad_filter_values_are_invalid_argument(stubs: Stubs, fields: dict[str, object], field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.library.ListVideos(library_pb2.ListVideosRequest(**fields), timeout=10)  # type: ignore[arg-type]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert status_field(caught.value) == field
    assert field in (caught.value.details() or "")


def test_cli_filters_and_details(server: ServerProcess, scanned: job_pb2.Job, root: MetadataCorpus) -> None:
    def listed(*args: str) -> list[str]:
        run = run_cli("videos", "list", "--prefix", str(root.directory), *args, "--json", server=server)
        assert run.returncode == 0, run.stderr
        return sorted(Path(json.loads(line)["path"]).name for line in run.stdout.splitlines())

    assert listed("--container", "mkv", "--has-subtitles") == ["surround.mkv"]
    assert listed("--hdr", "hdr10") == ["hdr10.mp4"]
    assert listed("--hdr", "dolby-vision") == ["dolby_vision.mp4"]
    assert listed("--audio-language", "deu", "--min-width", "70") == ["anamorphic.mp4"]
    assert listed("--subtitle-language", "fra") == ["surround.mkv"]
    if "interlaced" in root.files:
        assert listed("--interlaced") == ["interlaced.mkv"]
        assert "interlaced.mkv" not in listed("--progressive")
    assert listed("--no-subtitles", "--container", "matroska") == sorted(
        ["hlg.mkv", "hostile.mkv", "vp8.webm"] + (["interlaced.mkv"] if "interlaced" in root.files else [])
    )
    bad = run_cli("videos", "list", "--container", "mp4;drop", server=server)
    assert bad.returncode == 1 and "container" in bad.stderr

    shown = run_cli("videos", "get", str(root.files["surround"]), server=server)
    assert shown.returncode == 0, shown.stderr
    for text in ("My Film", "5.1(side)", "448 kb/s", '"Director\'s commentary"', "commentary", "subrip (text)",
                 '"English (forced)"', "forced", "SDH", "chapters", "0:00-0:01 Main", "Intro"):  # fmt: skip
        assert text in shown.stdout, (text, shown.stdout)
    hdr = run_cli("videos", "get", str(root.files["hdr10"]), server=server)
    assert "HDR10, mastering 0.005-1000 cd/m², MaxCLL 1000, MaxFALL 400" in hdr.stdout, hdr.stdout
    wide = run_cli("videos", "get", str(root.files["anamorphic"]), server=server)
    assert "85x48 (SAR 32:27, DAR 16:9)" in wide.stdout, wide.stdout
    hostile = run_cli("videos", "get", str(root.files["hostile"]), server=server)
    assert "bad\\x1b]0;PWNED\\x07title" in hostile.stdout and "\x1b" not in hostile.stdout
