"""Real, tiny video files for tests and benchmarks, encoded with PyAV (no system ffmpeg needed).

Clips are small (default 64x48, 1 s at 25 fps, a few kB) so a session can make dozens in well under a second.
Everything a prober reports is set explicitly here, so tests can assert that what was encoded is what is read:
codec, resolution, frame rate, duration, pixel format (bit depth), display rotation, colour tags, audio codec/
channels/sample rate/language, subtitle languages and the creation_time tag.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

# SVT-AV1 prints a banner to stderr for every encoder it opens; 1 keeps errors only.
os.environ.setdefault("SVT_LOG", "1")

# Encoder used for each codec name as FFmpeg's demuxers report it.
VIDEO_ENCODERS = {"h264": "libx264", "vp9": "libvpx-vp9", "av1": "libsvtav1", "vp8": "libvpx"}
AUDIO_ENCODERS = {"aac": "aac", "opus": "libopus", "ac3": "ac3"}
# Encoder options that keep encoding fast and deterministic on tiny frames.
_VIDEO_OPTIONS = {
    "libx264": {"preset": "ultrafast", "threads": "1"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "threads": "1"},
    "libvpx": {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "threads": "1"},
    "libsvtav1": {"preset": "12"},
}
_SUBTITLE_CODECS = {".mkv": "subrip", ".webm": "webvtt", ".mp4": "mov_text", ".mov": "mov_text", ".m4v": "mov_text"}

# Transfer characteristics / primaries by FFmpeg name, as ints (ISO/IEC 23091-2 code points).
TRC = {"bt709": 1, "smpte2084": 16, "arib-std-b67": 18}
PRIMARIES = {"bt709": 1, "bt2020": 9}


@dataclass(frozen=True)
class Track:
    """An audio or subtitle stream's tags and dispositions (FFmpeg's names: default, forced, hearing_impaired,
    visual_impaired, comment, original, dub)."""

    language: str = ""
    title: str = ""
    disposition: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClipSpec:
    """What `make_clip` encoded, for tests to compare a probe against."""

    path: Path
    video_codec: str | None
    width: int
    height: int
    fps: int
    frames: int
    pix_fmt: str
    audio_codec: str | None
    audio_rate: int
    audio_channels: int
    audio_language: str
    rotation: int
    subtitle_languages: tuple[str, ...] = field(default=())
    creation_time: str | None = None
    color_transfer: str = ""
    color_primaries: str = ""
    sar: Fraction | None = None
    audio_layout: str = ""
    audio_track: Track = field(default_factory=Track)
    subtitle_tracks: tuple[Track, ...] = ()
    title: str = ""
    chapters: tuple[tuple[float, float, str], ...] = ()

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    @property
    def bit_depth(self) -> int:
        return 10 if "10" in self.pix_fmt else 8


def make_clip(
    path: Path | str,
    *,
    video_codec: str | None = "h264",
    width: int = 64,
    height: int = 48,
    fps: int = 25,
    duration_s: float = 1.0,
    pix_fmt: str = "yuv420p",
    audio_codec: str | None = "aac",
    audio_rate: int = 48_000,
    audio_channels: int = 2,
    audio_language: str = "",
    rotation: int = 0,
    subtitle_languages: Sequence[str] = (),
    creation_time: str | None = None,
    color_transfer: str = "",
    color_primaries: str = "",
    sar: Fraction | None = None,
    audio_layout: str = "",
    audio_track: Track | None = None,
    subtitle_tracks: Sequence[Track] = (),
    title: str = "",
    chapters: Sequence[tuple[float, float, str]] = (),
) -> ClipSpec:
    """Encodes a clip at `path`; the container follows the file extension (.mp4, .mkv, .webm, .mov, ...).

    `rotation` is the display rotation in degrees clockwise (as reelscan reports it), stored as a display matrix.
    `sar` the sample aspect ratio, `audio_layout` an FFmpeg channel layout name (overrides audio_channels),
    `audio_track`/`subtitle_tracks` tags and dispositions (subtitle_tracks come after subtitle_languages'),
    `title` the container's title tag, `chapters` (start s, end s, title) each.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = max(1, round(duration_s * fps))
    with av.open(str(path), "w") as out:
        if creation_time is not None:
            out.metadata["creation_time"] = creation_time
        if title:
            out.metadata["title"] = title
        if chapters:
            out.set_chapters(
                [
                    {
                        "id": i + 1,
                        "start": round(a * 1000),
                        "end": round(b * 1000),
                        "time_base": Fraction(1, 1000),
                        "metadata": {"title": t} if t else {},
                    }
                    for i, (a, b, t) in enumerate(chapters)
                ]
            )
        vstream = None
        if video_codec is not None:
            encoder = VIDEO_ENCODERS[video_codec]
            vstream = out.add_stream(encoder, rate=fps, options=dict(_VIDEO_OPTIONS.get(encoder, {})))
            vstream.width, vstream.height, vstream.pix_fmt = width, height, pix_fmt
            vstream.codec_context.time_base = Fraction(1, fps)
            if rotation % 360:
                # PyAV's angle is counter-clockwise; reelscan (like the old `rotate` tag) reports clockwise.
                vstream.set_display_rotation(-rotation % 360)
            if color_transfer:
                vstream.codec_context.color_trc = TRC[color_transfer]
            if color_primaries:
                vstream.codec_context.color_primaries = PRIMARIES[color_primaries]
            if sar is not None:
                vstream.codec_context.sample_aspect_ratio = sar
        astream = None
        if audio_codec is not None:
            astream = out.add_stream(AUDIO_ENCODERS[audio_codec], rate=audio_rate)
            astream.layout = audio_layout or ("stereo" if audio_channels == 2 else "mono")
            if audio_layout:
                audio_channels = astream.codec_context.layout.nb_channels
            if audio_language:
                astream.metadata["language"] = audio_language
            if audio_track is not None:
                _tag(astream, audio_track)
        sub_streams = []
        for track in [Track(lang) for lang in subtitle_languages] + list(subtitle_tracks):
            sub = out.add_mux_stream(_SUBTITLE_CODECS[path.suffix.lower()])
            _tag(sub, track)
            sub.time_base = Fraction(1, 1000)
            sub_streams.append(sub)

        if vstream is not None:
            _encode_video(out, vstream, frames)
        if astream is not None:
            _encode_audio(out, astream, frames / fps)
        for sub in sub_streams:
            _mux_subtitle(out, sub, path.suffix.lower())
    return ClipSpec(
        path=path,
        video_codec=video_codec,
        width=width,
        height=height,
        fps=fps,
        frames=frames,
        pix_fmt=pix_fmt,
        audio_codec=audio_codec,
        audio_rate=audio_rate,
        audio_channels=audio_channels,
        audio_language=audio_language,
        rotation=rotation % 360,
        subtitle_languages=tuple(subtitle_languages),
        creation_time=creation_time,
        color_transfer=color_transfer,
        color_primaries=color_primaries,
        sar=sar,
        audio_layout=audio_layout,
        audio_track=audio_track or Track(audio_language),
        subtitle_tracks=tuple(subtitle_tracks),
        title=title,
        chapters=tuple(chapters),
    )


def _tag(stream: av.stream.Stream, track: Track) -> None:
    if track.language:
        stream.metadata["language"] = track.language
    if track.title:
        stream.metadata["title"] = track.title
    flags = av.stream.Disposition(0)
    for name in track.disposition:
        flags |= getattr(av.stream.Disposition, name)
    stream.disposition = flags


def _encode_video(out: av.container.OutputContainer, stream: av.VideoStream, frames: int) -> None:
    for i in range(frames):
        frame = av.VideoFrame(stream.width, stream.height, stream.pix_fmt)
        for plane in frame.planes:
            # A moving grey level, so encoders produce real (non-empty) frames.
            plane.update(bytes([(i * 7) % 200 + 16]) * plane.buffer_size)
        frame.pts = i
        frame.time_base = Fraction(1, int(stream.codec_context.time_base.denominator))
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def _encode_audio(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    rate = stream.codec_context.sample_rate
    frame_size = stream.codec_context.frame_size or 1024
    total = int(seconds * rate)
    fmt = stream.codec_context.format.name
    pts = 0
    while pts < total:
        frame = av.AudioFrame(format=fmt, layout=stream.codec_context.layout.name, samples=frame_size)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = rate
        frame.pts = pts
        frame.time_base = Fraction(1, rate)
        out.mux(stream.encode(frame))
        pts += frame_size
    out.mux(stream.encode(None))


def _mux_subtitle(out: av.container.OutputContainer, stream: av.stream.Stream, suffix: str) -> None:
    text = b"hello"
    payload = len(text).to_bytes(2, "big") + text if suffix in (".mp4", ".mov", ".m4v") else text
    packet = av.Packet(payload)
    packet.stream = stream
    packet.pts = packet.dts = 0
    packet.duration = 500
    packet.time_base = Fraction(1, 1000)
    out.mux(packet)


# --- broken files -----------------------------------------------------------------------------------------------


def make_zero_byte(path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def make_random_bytes(path: Path | str, size: int = 4096, seed: int = 0) -> Path:
    """Noise that no demuxer should accept (seeded, so it is the same noise every run)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def make_truncated(path: Path | str, source: Path, keep: float = 0.02) -> Path:
    """The first `keep` fraction of a valid clip: a header that promises data that is not there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = source.read_bytes()
    path.write_bytes(data[: max(16, int(len(data) * keep))])
    return path


def make_corrupt(path: Path | str, source: Path, seed: int = 0) -> Path:
    """A valid clip's first 8 bytes followed by noise: it looks like a container but is not one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = source.read_bytes()
    noise = random.Random(seed).randbytes(len(data) - 8)
    path.write_bytes(data[:8] + noise)
    return path


def make_fifo(path: Path | str) -> Path:
    """A named pipe: opening it for reading blocks until a writer appears (forever, in tests)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def copy_clip(source: Path, dest: Path | str) -> Path:
    """A byte copy of a clip (much faster than encoding another) with its own mtime."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    return dest


# --- what PyAV cannot write: the ffmpeg CLI, and boxes added to an MP4 ------------------------------------------


FFMPEG = shutil.which("ffmpeg")


def _ffmpeg(*args: str) -> None:
    if FFMPEG is None:
        raise RuntimeError("the ffmpeg CLI is not on PATH")
    subprocess.run([FFMPEG, "-v", "error", "-y", "-nostdin", *args], check=True, capture_output=True)


def make_interlaced(path: Path | str, field_order: str = "tt") -> Path:
    """An interlaced H.264 clip (field-coded by x264, top field first for "tt", bottom for "bb"), with the field
    order in the container: PyAV's encoder options cannot make x264 code fields. Needs the ffmpeg CLI."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tff = "tff=1" if field_order == "tt" else "bff=1"
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-t", "0.4", "-c:v", "libx264", "-preset", "ultrafast",
        "-flags", "+ildct+ilme", "-x264-params", tff, "-field_order", field_order, str(path),
    )  # fmt: skip
    return path


def add_cover_art(source: Path, dest: Path | str) -> Path:
    """`source` with a PNG attached as cover art (an attached_pic stream). Needs the ffmpeg CLI."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    cover = dest.with_suffix(".cover.png")
    _ffmpeg("-f", "lavfi", "-i", "color=c=red:size=32x32", "-frames:v", "1", str(cover))
    _ffmpeg(
        "-i", str(source), "-i", str(cover), "-map", "0", "-map", "1", "-c", "copy",
        "-disposition:v:1", "attached_pic", str(dest),
    )  # fmt: skip
    cover.unlink()
    return dest


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def mdcv_box(
    primaries: tuple[tuple[int, int], tuple[int, int], tuple[int, int]],
    white: tuple[int, int],
    max_luminance: int,
    min_luminance: int,
) -> bytes:
    """ISO/IEC 23001-8 mastering display colour volume: primaries (G, B, R order in the box; given here R, G, B)
    and white point in 0.00002 units, luminance in 0.0001 cd/m²."""
    (rx, ry), (gx, gy), (bx, by) = primaries
    payload = struct.pack(">8H", gx, gy, bx, by, rx, ry, *white) + struct.pack(">2I", max_luminance, min_luminance)
    return _box(b"mdcv", payload)


def clli_box(max_cll: int, max_fall: int) -> bytes:
    return _box(b"clli", struct.pack(">2H", max_cll, max_fall))


def dvcc_box(profile: int, level: int) -> bytes:
    """A Dolby Vision configuration record (version 1.0, RPU present, base layer present)."""
    bits = (profile << 9) | (level << 3) | (1 << 2) | 1  # profile 7b, level 6b, rpu, el, bl flags
    return _box(b"dvcC", bytes([1, 0]) + struct.pack(">H", bits) + bytes([0x10]) + bytes(19))


_CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"stbl")


def add_sample_entry_boxes(path: Path | str, boxes: bytes) -> Path:
    """Appends `boxes` to the first video sample entry (avc1, hvc1, ...) of an MP4 whose moov comes after its
    mdat (as PyAV writes it), growing every enclosing box: no chunk offset moves. This is how an encoder's
    HDR10 metadata (mdcv, clli) and Dolby Vision configuration (dvcC) reach the file, which PyAV cannot write."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    chain: list[int] = []  # offsets of the boxes to grow
    offset, end = 0, len(data)
    while offset < end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        if kind in _CONTAINERS:
            chain.append(offset)
            if kind == b"stbl":
                break
            end, offset = offset + size, offset + 8
            continue
        offset += size
    else:
        raise ValueError(f"{path}: no stbl box")
    stbl = chain[-1]
    stsd = stbl + 8
    size, kind = struct.unpack_from(">I4s", data, stsd)
    assert kind == b"stsd", kind
    entry = stsd + 16  # box header, version/flags, entry count
    entry_size, entry_kind = struct.unpack_from(">I4s", data, entry)
    if entry_kind not in (b"avc1", b"hvc1", b"hev1", b"vp09", b"av01"):
        raise ValueError(f"{path}: first sample entry is {entry_kind!r}, not video (make a video-only clip)")
    moov = chain[0]
    mdat = data.find(b"mdat")
    assert 0 < mdat < moov, "moov must come after mdat, or chunk offsets would move"
    insert_at = entry + entry_size
    data[insert_at:insert_at] = boxes
    for box in [*chain, stsd, entry]:
        (size,) = struct.unpack_from(">I", data, box)
        struct.pack_into(">I", data, box, size + len(boxes))
    path.write_bytes(bytes(data))
    return path


def has_encoder(name: str) -> bool:
    return name in av.codecs_available


def available_video_codecs() -> set[str]:
    """Codec names (h264, vp9, av1) whose encoder this PyAV build has."""
    return {name for name, encoder in VIDEO_ENCODERS.items() if encoder in av.codecs_available}


__all__ = [
    "FFMPEG",
    "PRIMARIES",
    "TRC",
    "ClipSpec",
    "Track",
    "add_cover_art",
    "add_sample_entry_boxes",
    "available_video_codecs",
    "clli_box",
    "copy_clip",
    "dvcc_box",
    "has_encoder",
    "make_clip",
    "make_corrupt",
    "make_fifo",
    "make_interlaced",
    "make_random_bytes",
    "make_truncated",
    "make_zero_byte",
    "mdcv_box",
]
