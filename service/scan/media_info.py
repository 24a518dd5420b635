"""What a probe finds out about one file, independent of the backend (PyAV or ffprobe) that found it.

Both backends build these plain dataclasses through the same normalising helpers below, so that they agree on the
same file: colour names as FFmpeg spells them, rotation as clockwise degrees, bit depth from the pixel format,
durations in whole microseconds (FFmpeg's AV_TIME_BASE, which is also ffprobe's printed precision).
"""

from __future__ import annotations

import enum
import functools
import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
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
# av_color_space_name by AVColorSpace value (ISO/IEC 23091-2 MatrixCoefficients); 2 is "unknown".
COLOR_SPACE_NAMES: Mapping[int, str] = {
    0: "gbr",
    1: "bt709",
    4: "fcc",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "ycgco",
    9: "bt2020nc",
    10: "bt2020c",
    11: "smpte2085",
    12: "chroma-derived-nc",
    13: "chroma-derived-c",
    14: "ictcp",
}
# av_color_range_name: 1 limited ("tv"), 2 full ("pc"); 0 is unspecified.
COLOR_RANGE_NAMES: Mapping[int, str] = {1: "tv", 2: "pc"}
# ffprobe's field_order names by AVFieldOrder value; 0 is unknown. Only "progressive" is not interlaced.
FIELD_ORDER_NAMES: Mapping[int, str] = {1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}
INTERLACED_FIELD_ORDERS = frozenset({"tt", "bb", "tb", "bt"})
# Stream dispositions reelscan reports, by FFmpeg's (and ffprobe's) name.
DISPOSITIONS = ("default", "dub", "original", "comment", "forced", "hearing_impaired", "visual_impaired")
# HDR formats, by how the file signals them (HDR10+ needs per-frame metadata, which a header probe does not read).
HDR_FORMATS = ("sdr", "hdr10", "hlg", "dolby_vision")
# Bumped whenever a probe learns new fields: rows probed by an older version count as changed, so the next scan of
# their root probes them again instead of leaving the new fields empty. 1: before this was stored.
PROBE_VERSION = 2
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
class MasteringDisplay:
    """SMPTE ST 2086 mastering display (HDR10): CIE 1931 xy chromaticities, luminance in cd/m² (0 when absent)."""

    red_x: float
    red_y: float
    green_x: float
    green_y: float
    blue_x: float
    blue_y: float
    white_x: float
    white_y: float
    min_luminance: float
    max_luminance: float


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
    # Since PROBE_VERSION 2; the defaults are what a row probed before holds.
    color_space: str = ""  # matrix coefficients (bt709, bt2020nc, ...)
    color_range: str = ""  # "tv" (limited) or "pc" (full)
    hdr_format: str = ""  # one of HDR_FORMATS; "" only for rows probed before PROBE_VERSION 2
    mastering_display: MasteringDisplay | None = None
    max_cll: int = 0  # content light level, cd/m²; 0 when not stated
    max_fall: int = 0
    sample_aspect_ratio: str = ""  # "N:D"; "1:1" when the file does not say (square pixels)
    display_aspect_ratio: str = ""
    display_width: int = 0  # the picture as shown: SAR applied to the width, then rotated
    display_height: int = 0
    field_order: str = ""  # progressive, tt, bb, tb, bt; "" when unknown
    bit_rate: int = 0
    frame_count: int = 0  # as the container states it; 0 when it does not

    @property
    def interlaced(self) -> bool:
        return self.field_order in INTERLACED_FIELD_ORDERS


@dataclass(frozen=True, slots=True)
class AudioInfo:
    codec: str
    channels: int
    sample_rate: int
    language: str
    # Since PROBE_VERSION 2.
    channel_layout: str = ""  # FFmpeg's name: "stereo", "5.1(side)", ...; "" when unspecified
    bit_rate: int = 0
    profile: str = ""  # "LC", "HE-AAC", ...
    title: str = ""
    disposition: tuple[str, ...] = ()  # names from DISPOSITIONS, in that order


@dataclass(frozen=True, slots=True)
class SubtitleInfo:
    codec: str
    language: str
    title: str = ""
    disposition: tuple[str, ...] = ()
    kind: str = ""  # "text" or "bitmap" (image subtitles); "" when the codec is unknown


@dataclass(frozen=True, slots=True)
class Chapter:
    start_us: int
    end_us: int
    title: str


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
    # Since PROBE_VERSION 2.
    subtitles: tuple[SubtitleInfo, ...] = ()  # at most MAX_STREAMS_LISTED, in file order
    title: str = ""  # the container's title tag
    has_cover_art: bool = False  # an attached picture stream
    chapter_count: int = 0
    chapters: tuple[Chapter, ...] = ()  # the first MAX_STREAMS_LISTED

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for the worker pipe)."""
        return {
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "container_format": self.container_format,
            "duration_us": self.duration_us,
            "bit_rate": self.bit_rate,
            "video": None if self.video is None else _video_to_json(self.video),
            "audio": [audio_to_json(a) for a in self.audio],
            "subtitle_count": self.subtitle_count,
            "subtitle_languages": list(self.subtitle_languages),
            "creation_time_us": self.creation_time_us,
            **details_to_json(self),
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
            audio=tuple(audio_from_json(a) for a in data["audio"]),
            subtitle_count=int(data["subtitle_count"]),
            subtitle_languages=tuple(str(x) for x in data["subtitle_languages"]),
            creation_time_us=None if data["creation_time_us"] is None else int(data["creation_time_us"]),
            **details_from_json(data),
        )


def audio_to_json(a: AudioInfo) -> list[Any]:
    return [
        a.codec,
        a.channels,
        a.sample_rate,
        a.language,
        a.channel_layout,
        a.bit_rate,
        a.profile,
        a.title,
        list(a.disposition),
    ]


def audio_from_json(a: list[Any]) -> AudioInfo:
    """An AudioInfo from audio_to_json's list, or from the 4 fields stored before PROBE_VERSION 2."""
    codec, channels, rate, lang, *more = a
    layout, bit_rate, profile, title, disposition = more if more else ("", 0, "", "", [])
    return AudioInfo(
        str(codec),
        int(channels),
        int(rate),
        str(lang),
        str(layout),
        int(bit_rate),
        str(profile),
        str(title),
        tuple(str(d) for d in disposition),
    )


def details_to_json(info: MediaInfo) -> dict[str, Any]:
    """The fields added in PROBE_VERSION 2 that are not audio: for the worker pipe and the stores' details
    column."""
    return {
        "subtitles": [[s.codec, s.language, s.title, list(s.disposition), s.kind] for s in info.subtitles],
        "title": info.title,
        "has_cover_art": info.has_cover_art,
        "chapter_count": info.chapter_count,
        "chapters": [[c.start_us, c.end_us, c.title] for c in info.chapters],
    }


def details_from_json(data: Mapping[str, Any]) -> dict[str, Any]:
    """MediaInfo keyword arguments from details_to_json's dict (a row from before PROBE_VERSION 2: {})."""
    return {
        "subtitles": tuple(
            SubtitleInfo(str(c), str(lang), str(t), tuple(str(d) for d in disp), str(k))
            for c, lang, t, disp, k in data.get("subtitles", ())
        ),
        "title": str(data.get("title", "")),
        "has_cover_art": bool(data.get("has_cover_art", False)),
        "chapter_count": int(data.get("chapter_count", 0)),
        "chapters": tuple(Chapter(int(a), int(b), str(t)) for a, b, t in data.get("chapters", ())),
    }


def video_details_to_json(v: VideoInfo) -> dict[str, Any]:
    m = v.mastering_display
    return {
        "color_space": v.color_space,
        "color_range": v.color_range,
        "hdr_format": v.hdr_format,
        "mastering_display": None
        if m is None
        else [
            m.red_x,
            m.red_y,
            m.green_x,
            m.green_y,
            m.blue_x,
            m.blue_y,
            m.white_x,
            m.white_y,
            m.min_luminance,
            m.max_luminance,
        ],
        "max_cll": v.max_cll,
        "max_fall": v.max_fall,
        "sample_aspect_ratio": v.sample_aspect_ratio,
        "display_aspect_ratio": v.display_aspect_ratio,
        "display_width": v.display_width,
        "display_height": v.display_height,
        "field_order": v.field_order,
        "bit_rate": v.bit_rate,
        "frame_count": v.frame_count,
    }


def video_details_kwargs(d: Mapping[str, Any] | None) -> dict[str, Any]:
    """VideoInfo keyword arguments from _video_details' dict; {} for None (a row from before PROBE_VERSION 2)."""
    if not d:
        return {}
    m = d.get("mastering_display")
    return {
        "color_space": str(d["color_space"]),
        "color_range": str(d["color_range"]),
        "hdr_format": str(d["hdr_format"]),
        "mastering_display": None if m is None else MasteringDisplay(*(float(x) for x in m)),
        "max_cll": int(d["max_cll"]),
        "max_fall": int(d["max_fall"]),
        "sample_aspect_ratio": str(d["sample_aspect_ratio"]),
        "display_aspect_ratio": str(d["display_aspect_ratio"]),
        "display_width": int(d["display_width"]),
        "display_height": int(d["display_height"]),
        "field_order": str(d["field_order"]),
        "bit_rate": int(d["bit_rate"]),
        "frame_count": int(d["frame_count"]),
    }


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
        video_details_to_json(v),
    ]


def _video_from_json(v: list[Any]) -> VideoInfo:
    codec, profile, width, height, rate, pix, depth, rotation, trc, prim, hdr, details = v
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
        **video_details_kwargs(details),
    )


# --- normalising helpers shared by both backends -----------------------------------------------------------------


NO_MEDIA_STREAM = "no audio or video stream"
EMPTY_FILE = "empty file"
NO_MOOV = "no moov atom (incomplete download?)"
# ISO base media (MP4, MOV, 3GP, M4V) files begin with one of these boxes; the moov box holds the index that
# FFmpeg needs, and a download cut short (or a recording never finalised) lacks it when it was to come last.
_ISO_BMFF_BOXES = (b"ftyp", b"styp", b"mdat", b"free", b"skip", b"wide", b"pnot")


def require_media(info: MediaInfo) -> MediaInfo | ProbeFailure:
    """A file with neither a video nor an audio stream is not media, whatever its header claims: a container
    header followed by junk opens "successfully" with no streams at all."""
    if info.video is None and not info.audio:
        return ProbeFailure(ProbeErrorKind.PROBE_FAILED, NO_MEDIA_STREAM)
    return info


def explain_failure(head: bytes, size: int, moov: str, reason: str) -> str:
    """A clearer reason for a probe that FFmpeg failed with a generic one ("Invalid data found when processing
    input"), where the file itself tells the cause: `head` is its first bytes, `moov` what scan_boxes found."""
    if size == 0:
        return EMPTY_FILE
    if len(head) >= 8 and head[4:8] in _ISO_BMFF_BOXES and moov == "missing":
        return NO_MOOV
    return reason


# Top-level boxes of an ISO BMFF file; a chain of only these, ending at (or running past) the end of the file
# without a moov, is a file whose index was never written. Anything else is noise: no guess is made then.
_TOP_LEVEL_BOXES = frozenset(
    {
        b"ftyp",
        b"styp",
        b"mdat",
        b"free",
        b"skip",
        b"wide",
        b"pnot",
        b"pdin",
        b"uuid",
        b"sidx",
        b"moof",
        b"mfra",
        b"meta",
        b"junk",
    }
)


def scan_boxes(read_at: Any, size: int, limit: int = 64) -> str:
    """ "found", "missing" or "unknown": whether the top-level boxes of an ISO BMFF file include moov. Follows box
    sizes from the start, reading 16 bytes per box (`read_at(offset, n)` returns bytes), at most `limit` boxes."""
    offset = 0
    for _ in range(limit):
        if offset >= size:
            return "missing"
        header = read_at(offset, 16)
        if len(header) < 8:
            return "unknown"
        length = int.from_bytes(header[:4], "big")
        kind = header[4:8]
        if kind == b"moov":
            return "found"
        if kind not in _TOP_LEVEL_BOXES:
            return "unknown"
        if length == 1:
            if len(header) < 16:
                return "unknown"
            length = int.from_bytes(header[8:16], "big")
        elif length == 0:  # the box runs to the end of the file
            return "missing"
        if length < 8:
            return "unknown"
        offset += length
    return "unknown"


def sniff_failure(path: str | bytes, reason: str) -> str:
    """explain_failure for a file on disk (blocking: run it in a worker process or a thread)."""
    try:
        # O_NONBLOCK: a FIFO or device under a video's name must not hang this; only regular files are read.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return reason
            size = st.st_size

            def read_at(offset: int, n: int) -> bytes:
                f.seek(offset)
                return f.read(n)

            head = read_at(0, 16)
            moov = scan_boxes(read_at, size) if len(head) >= 8 and head[4:8] in _ISO_BMFF_BOXES else "unknown"
    except OSError:
        return reason
    return explain_failure(head, size, moov, reason)


def text(value: object) -> str:
    """A tag or name as reelscan stores it: a bounded string, "" for missing."""
    if value is None:
        return ""
    result = str(value)[:MAX_TEXT]
    if not result.isascii():
        # Storable everywhere (PostgreSQL text and jsonb, protobuf strings): no lone surrogates.
        result = result.encode("utf-8", "replace").decode("utf-8")
    return result.replace("\x00", "\ufffd") if "\x00" in result else result


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


def hdr_format(transfer: str, dovi_profile: int | None) -> str:
    """The HDR format a file signals in its headers: Dolby Vision by its configuration record (whatever the base
    layer's transfer), else HDR10 for PQ (smpte2084) and HLG for arib-std-b67; "sdr" otherwise."""
    if dovi_profile is not None:
        return "dolby_vision"
    return {"smpte2084": "hdr10", "arib-std-b67": "hlg"}.get(transfer, "sdr")


def ratio_text(num: int, den: int) -> str:
    """ "N:D" for an aspect ratio, "" when unknown (a zero term)."""
    return f"{num}:{den}" if num > 0 and den > 0 else ""


def display_geometry(width: int, height: int, sar_num: int, sar_den: int, rotation: int) -> tuple[str, int, int]:
    """(display aspect ratio, display width, display height) as a player shows the picture: the sample aspect
    ratio stretches the width (720x480 at 32:27 is 853x480, 16:9), then a 90/270 rotation swaps the sides. The
    ratio is reduced as ffprobe reduces it; "" when the SAR is unknown."""
    if width <= 0 or height <= 0:
        return "", 0, 0
    dar = ""
    shown_w = width
    if sar_num > 0 and sar_den > 0:
        ratio = Fraction(width * sar_num, height * sar_den)
        dar = f"{ratio.numerator}:{ratio.denominator}"
        shown_w = max(1, round(width * sar_num / sar_den))
    if rotation in (90, 270):
        return dar, height, shown_w
    return dar, shown_w, height


def sample_aspect(value: object) -> tuple[int, int]:
    """(num, den) of a sample aspect ratio from "N:D" or a Fraction. Square pixels (1, 1) when the file does not
    state one: that is what players assume, and FFmpeg releases differ on whether they report an unstated SAR as
    1:1 or as unknown, so the two backends would otherwise disagree on the same file."""
    if isinstance(value, Fraction):
        return (value.numerator, value.denominator) if value > 0 else (1, 1)
    try:
        num, den = str(value).split(":")
        n, d = int(num), int(den)
    except ValueError:
        return 1, 1
    return (n, d) if n > 0 and d > 0 else (1, 1)


def profile_name(value: object) -> str:
    """A codec profile's name. A bare number is what ffprobe prints for a codec with no profile names (VP8's "0"),
    where PyAV reports none: neither names a profile, so both are ""."""
    name = text(value).strip()
    if name.lower() == "unknown" or name.lstrip("-").isdigit():
        return ""
    return name


def channel_layout_name(value: object) -> str:
    """FFmpeg's channel layout name; "" for an unspecified order (FFmpeg describes it as "2 channels")."""
    name = text(value).strip()
    if name.lower() in ("", "unknown") or name.endswith(" channels") or name.endswith(" channel"):
        return ""
    return name


def dispositions(flags: Mapping[str, object]) -> tuple[str, ...]:
    """The DISPOSITIONS that are set, in DISPOSITIONS order, from a name -> truthy mapping."""
    return tuple(name for name in DISPOSITIONS if flags.get(name))


@functools.lru_cache(maxsize=256)
def subtitle_kind(codec: str) -> str:
    """ "text" or "bitmap" from FFmpeg's codec descriptor properties (AV_CODEC_PROP_TEXT_SUB / _BITMAP_SUB), so
    both backends agree; "" when FFmpeg does not know the codec."""
    if not codec:
        return ""
    import av

    try:
        props = int(av.Codec(codec, "r").properties)
    except (ValueError, TypeError, av.error.FFmpegError):
        return ""
    if props & (1 << 17):
        return "text"
    if props & (1 << 16):
        return "bitmap"
    return ""


def chapter(start: int, end: int, num: int, den: int, title: object) -> Chapter:
    """A chapter from start/end in time-base units (num/den seconds), in whole microseconds."""
    scale = Fraction(num, den) * 1_000_000 if den else Fraction(0)
    return Chapter(math.floor(start * scale), math.floor(end * scale), text(title))


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
