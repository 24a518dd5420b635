"""The metadata of issue 16, read from real files by both probe backends: each field has a file made with it
(tests/scan/metadata_corpus.py), its value is asserted, and the ffprobe backend gives the same MediaInfo."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any

import av
import pytest

from reelscan.service.scan import coded_side_data, probe_pyav
from reelscan.service.scan.media_info import (
    Chapter,
    MasteringDisplay,
    MediaInfo,
    ProbeErrorKind,
    ProbeFailure,
    SubtitleInfo,
)
from reelscan.service.scan.probe_ffprobe import FfprobeProber
from tests.media import FFMPEG, make_clip
from tests.scan.metadata_corpus import MetadataCorpus, build_metadata_corpus

FFPROBE = shutil.which("ffprobe")
needs_ffprobe = pytest.mark.skipif(FFPROBE is None, reason="ffprobe is not on PATH (apt-get install ffmpeg)")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="the ffmpeg CLI is not on PATH (apt-get install ffmpeg)")


@pytest.fixture(scope="module")
def mc(tmp_path_factory: pytest.TempPathFactory) -> MetadataCorpus:
    return build_metadata_corpus(tmp_path_factory.mktemp("metadata"))


def probe(path: Path) -> MediaInfo:
    info = probe_pyav.probe(str(path))
    assert isinstance(info, MediaInfo), info
    return info


def test_surround_audio_tracks_chapters_and_title(mc: MetadataCorpus) -> None:
    info = probe(mc.files["surround"])
    (audio,) = info.audio
    assert (audio.codec, audio.channels, audio.channel_layout) == ("ac3", 6, "5.1(side)")
    assert audio.bit_rate == 448_000  # AC-3 states its bit rate
    assert (audio.language, audio.title, audio.disposition) == ("eng", "Director's commentary", ("comment",))
    assert info.subtitles == (
        SubtitleInfo("subrip", "eng", "English (forced)", ("forced",), "text"),
        SubtitleInfo("subrip", "fra", "Français SDH", ("default", "hearing_impaired"), "text"),
    )
    assert (info.subtitle_count, info.subtitle_languages) == (2, ("eng", "fra"))
    assert info.title == "My Film"
    assert info.chapter_count == 2
    assert info.chapters == (Chapter(0, 500_000, "Intro"), Chapter(500_000, 1_000_000, "Main"))
    assert not info.has_cover_art
    assert info.video is not None and info.video.hdr_format == "sdr"


def test_stereo_aac_profile_bit_rates_and_frame_count(mc: MetadataCorpus) -> None:
    info = probe(mc.files["rotated"])
    (audio,) = info.audio
    assert (audio.channel_layout, audio.profile, audio.disposition) == ("stereo", "LC", ("default",))
    assert audio.bit_rate > 0
    v = info.video
    assert v is not None
    assert v.bit_rate > 0 and v.frame_count == 25  # MP4 states both (1 s at 25 fps)
    assert (v.field_order, v.interlaced) == ("progressive", False)


def test_a_codec_without_profile_names_has_no_profile(mc: MetadataCorpus) -> None:
    v = probe(mc.files["vp8"]).video
    assert v is not None and (v.codec, v.profile) == ("vp8", "")  # the ffprobe test below checks its "0" is "" too


def test_anamorphic_sample_aspect_ratio(mc: MetadataCorpus) -> None:
    v = probe(mc.files["anamorphic"]).video
    assert v is not None
    assert (v.width, v.height, v.sample_aspect_ratio, v.display_aspect_ratio) == (72, 48, "32:27", "16:9")
    assert (v.display_width, v.display_height) == (85, 48)


def test_rotation_swaps_the_display_size(mc: MetadataCorpus) -> None:
    v = probe(mc.files["rotated"]).video
    assert v is not None
    assert (v.rotation, v.width, v.height, v.display_width, v.display_height) == (90, 64, 48, 48, 64)
    assert (v.sample_aspect_ratio, v.display_aspect_ratio) == ("1:1", "4:3")  # not stated: square pixels


def test_rotation_is_read_from_coded_side_data_not_the_format_dump(mc: MetadataCorpus) -> None:
    """The display matrix comes from the stream's codec parameters through FFmpeg's own API (the format-dump
    parse is only a fallback for an FFmpeg or PyAV whose layout coded_side_data does not know)."""
    with av.open(str(mc.files["rotated"])) as container:
        side = coded_side_data.read(container.streams.video[0])
        assert side is not None, "coded side data unreadable with this PyAV/FFmpeg: rotation falls back to the dump"
        assert side.rotation_ccw == -90.0  # FFmpeg's counter-clockwise angle: 90 clockwise
        assert coded_side_data.read(container.streams.audio[0]) == coded_side_data.SideData(
            None, None, None, None, None
        )
    for rotation in (0, 180, 270):
        with av.open(str(make_clip(mc.directory / f"rot{rotation}.mov", rotation=rotation).path)) as container:
            side = coded_side_data.read(container.streams.video[0])
            assert side is not None
            assert probe_pyav._rotation(container, container.streams.video[0], side) == rotation


def test_hdr10_mastering_display_and_content_light_level(mc: MetadataCorpus) -> None:
    v = probe(mc.files["hdr10"]).video
    assert v is not None
    assert (v.hdr, v.hdr_format, v.color_transfer, v.color_primaries) == (True, "hdr10", "smpte2084", "bt2020")
    assert v.mastering_display == MasteringDisplay(
        0.708, 0.292, 0.17, 0.797, 0.131, 0.046, 0.3127, 0.329, min_luminance=0.005, max_luminance=1000.0
    )
    assert (v.max_cll, v.max_fall) == (1000, 400)
    assert v.color_range == "tv"


def test_hlg_and_dolby_vision(mc: MetadataCorpus) -> None:
    hlg = probe(mc.files["hlg"]).video
    assert hlg is not None and (hlg.hdr_format, hlg.mastering_display, hlg.max_cll) == ("hlg", None, 0)
    dv = probe(mc.files["dolby_vision"]).video
    assert dv is not None and dv.hdr_format == "dolby_vision"
    sdr = probe(mc.files["anamorphic"]).video
    assert sdr is not None and (sdr.hdr, sdr.hdr_format) == (False, "sdr")


@needs_ffmpeg
def test_interlaced_and_cover_art(mc: MetadataCorpus) -> None:
    v = probe(mc.files["interlaced"]).video
    assert v is not None and (v.field_order, v.interlaced) == ("tt", True)
    info = probe(mc.files["cover_art"])
    assert info.has_cover_art
    assert info.video is not None and info.video.codec == "h264"  # the cover (png) is not the main video stream


def test_he_aac_profile(tmp_path: Path) -> None:
    encoder = next((e for e in ("libfdk_aac",) if e in av.codecs_available), None)
    if encoder is None:
        pytest.skip("no HE-AAC encoder here (FFmpeg's own aac encoder writes LC only; libfdk_aac is not built in)")
    path = tmp_path / "he.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(encoder, rate=48_000, options={"profile": "aac_he"})
        for i in range(50):
            frame = av.AudioFrame(format=stream.codec_context.format.name, layout="stereo", samples=1024)
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.sample_rate, frame.pts = 48_000, i * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert probe(path).audio[0].profile == "HE-AAC"


def test_failure_reasons(mc: MetadataCorpus) -> None:
    reasons = {}
    for name, path in mc.broken.items():
        outcome = probe_pyav.probe(str(path))
        assert isinstance(outcome, ProbeFailure) and outcome.kind is ProbeErrorKind.PROBE_FAILED, name
        reasons[name] = outcome.reason
    assert reasons == {
        "empty": "empty file",
        "no_moov": "no moov atom (incomplete download?)",
        "no_media": "no audio or video stream",
    }


def test_noise_after_an_mp4_header_is_not_called_a_partial_download(tmp_path: Path, mc: MetadataCorpus) -> None:
    source = mc.files["rotated"].read_bytes()
    noisy = tmp_path / "noisy.mp4"
    noisy.write_bytes(source[:8] + bytes(range(256)) * 64)
    outcome = probe_pyav.probe(str(noisy))
    assert isinstance(outcome, ProbeFailure) and "moov" not in outcome.reason


# --- the ffprobe backend agrees ---------------------------------------------------------------------------------


def _ffmpeg_major(text: str) -> str:
    return text.split(".")[0]


@pytest.fixture(scope="module")
def same_ffmpeg() -> bool:
    banner = subprocess.run([FFPROBE or "ffprobe", "-version"], capture_output=True, text=True).stdout.split()
    return _ffmpeg_major(banner[2] if len(banner) > 2 else "") == _ffmpeg_major(str(av.ffmpeg_version_info))


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            out.update(_flat(getattr(value, f.name), f"{prefix}{f.name}."))
        return out
    if isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
        out = {f"{prefix}len": len(value)}
        for i, item in enumerate(value):
            out.update(_flat(item, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): value}


# Values that FFmpeg estimates rather than reads (an MP4's duration to the millisecond, an MPEG-TS stream's bit
# rate): different FFmpeg releases estimate them a little differently. Within one release they are equal.
_ESTIMATED = ("duration_us", "bit_rate")


@needs_ffprobe
async def test_ffprobe_gives_the_same_values(mc: MetadataCorpus, same_ffmpeg: bool) -> None:
    prober = FfprobeProber(concurrency=2, timeout_s=20)
    try:
        compared = 0
        for name, path in mc.files.items():
            via_pyav = probe(path)
            via_ffprobe = await prober.probe(str(path))
            assert isinstance(via_ffprobe, MediaInfo), (name, via_ffprobe)
            if same_ffmpeg:
                assert via_ffprobe == via_pyav, name
                continue
            a, b = _flat(via_pyav), _flat(via_ffprobe)
            assert a.keys() == b.keys(), name
            for key in a:
                if key.split(".")[-1] in _ESTIMATED and isinstance(a[key], int):
                    assert b[key] == pytest.approx(a[key], rel=0.01, abs=5_000), (name, key)
                else:
                    assert a[key] == b[key], (name, key)
                compared += 1
        assert compared > 300  # every field of every file
        for name, path in mc.broken.items():
            outcome = await prober.probe(str(path))
            expected = probe_pyav.probe(str(path))
            assert outcome == expected, name
    finally:
        await prober.close()


def test_readme_lists_the_default_extensions() -> None:
    import re

    from reelscan.service.config import DEFAULT_EXTENSIONS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Video files", 1)[1].split("\n## ", 1)[0]
    default = section.split("The\ndefault:", 1)[1].split("(", 1)[0]
    assert re.findall(r"`([a-z0-9]+)`", default) == list(DEFAULT_EXTENSIONS)


async def test_stream_and_chapter_lists_stay_within_the_limit(tmp_path: Path) -> None:
    """A file with more streams and chapters than the library lists: the first 64 of each, and the true counts."""
    from reelscan.service.scan.media_info import MAX_STREAMS_LISTED

    many = MAX_STREAMS_LISTED + 6
    clip = make_clip(
        tmp_path / "many.mkv",
        audio_codec=None,
        subtitle_languages=[f"l{i:02d}" for i in range(many)],
        chapters=[(i / many, (i + 1) / many, f"chapter {i}") for i in range(many)],
    )
    outcomes = [probe_pyav.probe(str(clip.path))]
    if FFPROBE is not None:
        outcomes.append(await FfprobeProber(concurrency=1, timeout_s=20).probe(str(clip.path)))
    for info in outcomes:
        assert isinstance(info, MediaInfo)
        assert (info.subtitle_count, len(info.subtitles), info.chapter_count, len(info.chapters)) == (
            many,
            MAX_STREAMS_LISTED,
            many,
            MAX_STREAMS_LISTED,
        )
        assert info.subtitles[-1].language == f"l{MAX_STREAMS_LISTED - 1:02d}"
        assert info.chapters[-1].title == f"chapter {MAX_STREAMS_LISTED - 1}"
    assert outcomes[0] == outcomes[-1]
