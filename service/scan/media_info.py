"""What a probe finds out about one file, independent of the backend (PyAV or ffprobe) that found it.

Both backends build these plain dataclasses through the same normalising helpers below, so that they agree on the
same file: colour names as FFmpeg spells them, rotation as clockwise degrees, bit depth from the pixel format,
durations in whole microseconds (FFmpeg's AV_TIME_BASE, which is also ffprobe's printed precision).
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# Bounds on what one file may put into the library, so a hostile file with thousands of streams or megabyte tags
# cannot bloat rows or worker messages.
MAX_STREAMS_LISTED = 64
MAX_TEXT = 256

# FFmpeg's names (libavutil av_color_transfer_name / av_color_primaries_name) by ISO/IEC 23091-2 code point.
# "unknown" and "reserved" are left out: they mean unspecified, which reelscan reports as "".
COLOR_TRANSFER_NAMES: Mapping[int, str] = {
    1: "bt709",
    4: "bt470m",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "linear",
    9: "log100",
    10: "log316",
    11: "iec61966-2-4",
    12: "bt1361e",
    13: "iec61966-2-1",
    14: "bt2020-10",
    15: "bt2020-12",
    16: "smpte2084",
    17: "smpte428",
    18: "arib-std-b67",
}
COLOR_PRIMARIES_NAMES: Mapping[int, str] = {
    1: "bt709",
    4: "bt470m",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "film",
    9: "bt2020",
    10: "smpte428",
    11: "smpte431",
    12: "smpte432",
    22: "ebu3213",
}
_UNSPECIFIED_NAMES = frozenset({"", "unknown", "reserved", "unspecified"})
# PQ (HDR10, Dolby Vision base layers) and HLG are the HDR transfer functions.
HDR_TRANSFERS = frozenset({"smpte2084", "arib-std-b67"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ProbeErrorKind(enum.IntEnum):
    """Why a file could not be probed; values equal reelscan.v1.ScanErrorKind."""

    PROBE_FAILED = 1
    PROBE_TIMEOUT = 2
    PROBE_CRASHED = 3
    UNREADABLE = 4


@dataclass(frozen=True, slots=True)
class ProbeFailure:
    """A file that could not be probed, and why. The scan records it as a scan error and goes on."""

    kind: ProbeErrorKind
    reason: str


@dataclass(frozen=True, slots=True)
class VideoInfo:
    codec: str
    profile: str
    width: int
    height: int
    frame_rate: float
    pixel_format: str
    bit_depth: int
    rotation: int  # degrees clockwise: 0, 90, 180 or 270
    color_transfer: str
    color_primaries: str
    hdr: bool


@dataclass(frozen=True, slots=True)
class AudioInfo:
    codec: str
    channels: int
    sample_rate: int
    language: str


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """Metadata of one probed file. `size` and `mtime_ns` are from a stat taken just before the probe opened it,
    so a file that changes while being probed is seen as changed by the next scan."""

    size: int
    mtime_ns: int
    container_format: str
    duration_us: int | None
    bit_rate: int
    video: VideoInfo | None
    audio: tuple[AudioInfo, ...] = ()
    subtitle_count: int = 0
    subtitle_languages: tuple[str, ...] = field(default=())
    creation_time_us: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for the worker pipe)."""
        return {
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "container_format": self.container_format,
            "duration_us": self.duration_us,
            "bit_rate": self.bit_rate,
            "video": None if self.video is None else _video_to_json(self.video),
            "audio": [[a.codec, a.channels, a.sample_rate, a.language] for a in self.audio],
            "subtitle_count": self.subtitle_count,
            "subtitle_languages": list(self.subtitle_languages),
            "creation_time_us": self.creation_time_us,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MediaInfo:
        """The inverse of to_json. Raises (KeyError, TypeError, ValueError) on a malformed message."""
        video = data["video"]
        return cls(
            size=int(data["size"]),
            mtime_ns=int(data["mtime_ns"]),
            container_format=str(data["container_format"]),
            duration_us=None if data["duration_us"] is None else int(data["duration_us"]),
            bit_rate=int(data["bit_rate"]),
            video=None if video is None else _video_from_json(video),
            audio=tuple(AudioInfo(str(c), int(ch), int(sr), str(lang)) for c, ch, sr, lang in data["audio"]),
            subtitle_count=int(data["subtitle_count"]),
            subtitle_languages=tuple(str(x) for x in data["subtitle_languages"]),
            creation_time_us=None if data["creation_time_us"] is None else int(data["creation_time_us"]),
        )


def _video_to_json(v: VideoInfo) -> list[Any]:
    return [
        v.codec,
        v.profile,
        v.width,
        v.height,
        v.frame_rate,
        v.pixel_format,
        v.bit_depth,
        v.rotation,
        v.color_transfer,
        v.color_primaries,
        v.hdr,
    ]


def _video_from_json(v: list[Any]) -> VideoInfo:
    codec, profile, width, height, rate, pix, depth, rotation, trc, prim, hdr = v
    return VideoInfo(
        str(codec),
        str(profile),
        int(width),
        int(height),
        float(rate),
        str(pix),
        int(depth),
        int(rotation),
        str(trc),
        str(prim),
        bool(hdr),
    )


# --- normalising helpers shared by both backends -----------------------------------------------------------------


def require_media(info: MediaInfo) -> MediaInfo | ProbeFailure:
    """A file with neither a video nor an audio stream is not media, whatever its header claims: a container
    header followed by junk opens "successfully" with no streams at all."""
    if info.video is None and not info.audio:
        return ProbeFailure(ProbeErrorKind.PROBE_FAILED, "no video or audio stream found")
    return info


def text(value: object) -> str:
    """A tag or name as reelscan stores it: a bounded string, "" for missing."""
    if value is None:
        return ""
    return str(value)[:MAX_TEXT]


def language(value: object) -> str:
    """A stream language tag; "und" (undetermined) is the same as no tag."""
    lang = text(value).strip()
    return "" if lang.lower() in ("", "und") else lang[:16]


def color_name(value: str | None) -> str:
    """FFmpeg's colour name, or "" when it means unspecified."""
    name = text(value).lower()
    return "" if name in _UNSPECIFIED_NAMES else name


def is_hdr(transfer: str) -> bool:
    return transfer in HDR_TRANSFERS


def rotation_from_ccw(degrees_ccw: float) -> int:
    """Clockwise display rotation, snapped to a multiple of 90, from FFmpeg's display-matrix angle.

    FFmpeg's av_display_rotation_get (and ffprobe's "rotation") is counter-clockwise; players rotate the picture by
    its negation, which is what the old `rotate` tag held and what reelscan reports.
    """
    if not math.isfinite(degrees_ccw):
        return 0
    return (-round(degrees_ccw / 90.0) * 90) % 360


def rotation_from_tag(tag: object) -> int:
    """Clockwise rotation from a legacy `rotate` stream tag ("90", "-90", ...); 0 when absent or malformed."""
    try:
        return (round(float(str(tag)) / 90.0) * 90) % 360
    except ValueError:
        return 0


def frame_rate(avg: float, fallback: float) -> float:
    """The average frame rate, or the container's base rate when the average is unknown (0 or NaN)."""
    for rate in (avg, fallback):
        if math.isfinite(rate) and rate > 0:
            return float(rate)
    return 0.0


@functools.lru_cache(maxsize=256)
def bit_depth(pixel_format: str) -> int:
    """Bits per colour component of an FFmpeg pixel format (yuv420p -> 8, yuv420p10le -> 10); 0 when unknown."""
    if not pixel_format:
        return 0
    import av  # the lookup is libavutil's own table, so both backends agree; av is a dependency either way

    try:
        components = av.VideoFormat(pixel_format).components
    except (ValueError, TypeError):
        return 0
    return int(components[0].bits) if components else 0


def creation_time_us(tag: object) -> int | None:
    """Microseconds since the Unix epoch from an ISO 8601 creation_time tag; None when absent or unparsable.

    Naive times are taken as UTC (what muxers write when they omit the zone).
    """
    raw = text(tag).strip()
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return (when - _EPOCH) // timedelta(microseconds=1)
    except OverflowError:
        return None
