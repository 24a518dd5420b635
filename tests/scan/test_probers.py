"""Both probe backends read back exactly what tests/media.py encoded, and agree with each other."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import av
import pytest

from reelscan.service.scan import probe_pyav
from reelscan.service.scan.media_info import MediaInfo, ProbeErrorKind, ProbeFailure, creation_time_us
from reelscan.service.scan.probe_ffprobe import FfprobeProber
from tests.media import ClipSpec
from tests.scan.conftest import Corpus

CLIP_NAMES = ["h264_aac", "vp9_opus", "mkv_rotated", "hdr10", "av1", "mov_mono", "tall"]
BROKEN_NAMES = ["zero", "random", "truncated", "corrupt"]
FFPROBE = shutil.which("ffprobe")
needs_ffprobe = pytest.mark.skipif(
    FFPROBE is None, reason="ffprobe is not on PATH (apt-get install ffmpeg to run the ffprobe backend tests)"
)


def assert_matches(info: MediaInfo, clip: ClipSpec) -> None:
    """Every field the clip was encoded with, read back."""
    st = clip.path.stat()
    assert (info.size, info.mtime_ns) == (st.st_size, st.st_mtime_ns)
    suffix = clip.path.suffix
    assert info.container_format == ("matroska,webm" if suffix in (".mkv", ".webm") else "mov,mp4,m4a,3gp,3g2,mj2")
    assert info.duration_us is not None
    # Within one frame: audio priming and container rounding may add a few milliseconds, never a frame.
    assert abs(info.duration_us / 1e6 - clip.duration_s) < 1 / clip.fps, info.duration_us
    assert info.bit_rate > 0
    video = info.video
    assert video is not None
    assert video.codec == clip.video_codec
    assert (video.width, video.height) == (clip.width, clip.height)
    assert video.frame_rate == pytest.approx(clip.fps)
    assert video.pixel_format == clip.pix_fmt
    assert video.bit_depth == clip.bit_depth
    assert video.rotation == clip.rotation
    assert video.color_transfer == clip.color_transfer
    assert video.color_primaries == clip.color_primaries
    assert video.hdr == (clip.color_transfer in ("smpte2084", "arib-std-b67"))
    assert video.profile  # every encoder used names its profile
    if clip.audio_codec is None:
        assert info.audio == ()
    else:
        assert len(info.audio) == 1
        audio = info.audio[0]
        assert (audio.codec, audio.channels, audio.sample_rate) == (
            clip.audio_codec,
            clip.audio_channels,
            clip.audio_rate,
        )
        assert audio.language == clip.audio_language
    assert info.subtitle_count == len(clip.subtitle_languages)
    assert info.subtitle_languages == clip.subtitle_languages
    assert info.creation_time_us == creation_time_us(clip.creation_time)


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_pyav_reads_what_was_encoded(corpus: Corpus, name: str) -> None:
    info = probe_pyav.probe(str(corpus.clips[name].path))
    assert isinstance(info, MediaInfo), info
    assert_matches(info, corpus.clips[name])


def test_pyav_specific_values(corpus: Corpus) -> None:
    """Spot checks of values that the generic comparison only checks for presence or emptiness."""
    info = probe_pyav.probe(str(corpus.clips["hdr10"].path))
    assert isinstance(info, MediaInfo) and info.video is not None
    assert (info.video.profile, info.video.bit_depth, info.video.hdr) == ("High 10", 10, True)
    info = probe_pyav.probe(str(corpus.clips["h264_aac"].path))
    assert isinstance(info, MediaInfo)
    assert info.creation_time_us == 1_704_164_645_000_000  # 2024-01-02T03:04:05Z
    assert info.subtitle_languages == ("eng", "fra")


@pytest.mark.parametrize("name", BROKEN_NAMES)
def test_pyav_broken_files_fail_cleanly(corpus: Corpus, name: str) -> None:
    outcome = probe_pyav.probe(str(corpus.broken[name]))
    assert isinstance(outcome, ProbeFailure)
    assert outcome.kind is ProbeErrorKind.PROBE_FAILED
    assert outcome.reason and str(corpus.broken[name]) not in outcome.reason


def test_pyav_missing_and_unreadable(tmp_path: Path, corpus: Corpus) -> None:
    missing = probe_pyav.probe(str(tmp_path / "nope.mp4"))
    assert isinstance(missing, ProbeFailure) and missing.kind is ProbeErrorKind.UNREADABLE
    locked = tmp_path / "locked.mp4"
    locked.write_bytes(corpus.clips["h264_aac"].path.read_bytes())
    locked.chmod(0)
    try:
        outcome = probe_pyav.probe(str(locked))
        if isinstance(outcome, MediaInfo):  # running as root: permissions do not apply
            pytest.skip("running as root, file permissions are not enforced")
        assert outcome.kind is ProbeErrorKind.UNREADABLE
    finally:
        locked.chmod(0o644)


def test_pyav_non_utf8_file_name(tmp_path: Path, corpus: Corpus) -> None:
    target = tmp_path / os.fsdecode(b"caf\xe9.mp4")  # not valid UTF-8: Python holds it with a surrogate escape
    target.write_bytes(corpus.clips["h264_aac"].path.read_bytes())
    info = probe_pyav.probe(str(target))
    assert isinstance(info, MediaInfo) and info.video is not None


# --- ffprobe ---------------------------------------------------------------------------------------------------


def _ffmpeg_major(version: str) -> str:
    return version.split(".")[0]


def _normalised(info: MediaInfo, same_ffmpeg: bool) -> MediaInfo:
    """Different FFmpeg releases' mov demuxers can disagree on an MP4's duration by a millisecond (edit lists,
    AAC priming), and the overall bit rate follows from it. Within one release the two backends agree exactly."""
    if same_ffmpeg:
        return info
    from dataclasses import replace

    return replace(info, duration_us=None, bit_rate=0)


@pytest.fixture(scope="module")
def same_ffmpeg() -> bool:
    """Whether ffprobe and PyAV's bundled libraries come from the same FFmpeg major release."""
    banner = subprocess.run([FFPROBE or "ffprobe", "-version"], capture_output=True, text=True).stdout.split()
    ffprobe_version = banner[2] if len(banner) > 2 else ""
    return _ffmpeg_major(ffprobe_version) == _ffmpeg_major(str(av.ffmpeg_version_info))


@needs_ffprobe
async def test_ffprobe_and_pyav_agree(corpus: Corpus, same_ffmpeg: bool) -> None:
    same = same_ffmpeg
    prober = FfprobeProber(concurrency=2, timeout_s=20)
    await prober.start()
    try:
        for name in CLIP_NAMES:
            clip = corpus.clips[name]
            via_ffprobe = await prober.probe(str(clip.path))
            via_pyav = probe_pyav.probe(str(clip.path))
            assert isinstance(via_ffprobe, MediaInfo), via_ffprobe
            assert isinstance(via_pyav, MediaInfo), via_pyav
            assert_matches(via_ffprobe, clip)
            assert _normalised(via_ffprobe, same) == _normalised(via_pyav, same), name
            if not same:
                assert via_ffprobe.duration_us is not None and via_pyav.duration_us is not None
                assert abs(via_ffprobe.duration_us - via_pyav.duration_us) <= 5_000, name
                assert via_ffprobe.bit_rate == pytest.approx(via_pyav.bit_rate, rel=0.01), name
        for name in BROKEN_NAMES:
            outcome = await prober.probe(str(corpus.broken[name]))
            assert isinstance(outcome, ProbeFailure) and outcome.kind is ProbeErrorKind.PROBE_FAILED, name
    finally:
        await prober.close()


@needs_ffprobe
async def test_ffprobe_fifo_is_cut_off_by_timeout(tmp_path: Path) -> None:
    import time

    fifo = tmp_path / "x.mp4"
    os.mkfifo(fifo)
    prober = FfprobeProber(concurrency=1, timeout_s=0.5)
    start = time.monotonic()
    outcome = await prober.probe(str(fifo))
    assert isinstance(outcome, ProbeFailure) and outcome.kind is ProbeErrorKind.PROBE_TIMEOUT
    assert time.monotonic() - start < 5
    await prober.close()


async def test_ffprobe_missing_executable_is_a_clear_failure(corpus: Corpus) -> None:
    from reelscan.service.scan.prober import ProberUnavailable

    prober = FfprobeProber(concurrency=1, timeout_s=1, executable="reelscan-no-such-ffprobe")
    await prober.start()
    with pytest.raises(ProberUnavailable, match="not found"):
        await prober.probe(str(corpus.clips["h264_aac"].path))


def _junk_after_headers(directory: Path) -> list[Path]:
    """Files that start like a container and go on as noise: they open, with no streams at all."""
    junk = random.Random(5).randbytes(64 * 1024)
    directory.mkdir(parents=True, exist_ok=True)
    mp4 = directory / "moov-junk.mp4"
    mp4.write_bytes(b"\0\0\0\x18ftypisom\0\0\2\0isomiso2" + (len(junk) + 8).to_bytes(4, "big") + b"moov" + junk)
    avi = directory / "riff-junk.avi"
    avi.write_bytes(b"RIFF\xf0\xff\xff\xffAVI LIST\x00\xff\xff\xffhdrl" + junk)
    return [mp4, avi]


def test_pyav_header_then_junk_is_a_failure(tmp_path: Path) -> None:
    for path in _junk_after_headers(tmp_path):
        outcome = probe_pyav.probe(str(path))
        assert isinstance(outcome, ProbeFailure) and outcome.kind is ProbeErrorKind.PROBE_FAILED, path.name
        assert outcome.reason


@needs_ffprobe
async def test_ffprobe_header_then_junk_is_a_failure(tmp_path: Path) -> None:
    prober = FfprobeProber(concurrency=1, timeout_s=20)
    for path in _junk_after_headers(tmp_path):
        outcome = await prober.probe(str(path))
        assert isinstance(outcome, ProbeFailure) and outcome.kind is ProbeErrorKind.PROBE_FAILED, path.name
    await prober.close()


def test_audio_only_file_is_media(tmp_path: Path) -> None:
    from tests.media import make_clip

    clip = make_clip(tmp_path / "audio.mp4", video_codec=None)
    info = probe_pyav.probe(str(clip.path))
    assert isinstance(info, MediaInfo) and info.video is None and info.audio[0].codec == "aac"
