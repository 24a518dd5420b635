"""The library's domain types and the pure rules every library store shares, whatever database is behind it.

Paths are stored as text, in library_path's form: the path itself unless it holds a backslash or bytes that are
not UTF-8 (escaped then, one-to-one): text columns and protobuf strings must be valid UTF-8.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, replace
from typing import Any

from reelscan.limits import MAX_PAGE_SIZE
from reelscan.paths import library_path as library_path  # re-exported: the stores and the scan use it from here
from reelscan.service.errors import InvalidArgument
from reelscan.service.jobs import page_token
from reelscan.service.scan import media_info as mi
from reelscan.service.scan.media_info import AudioInfo, Chapter, MediaInfo, ProbeErrorKind, SubtitleInfo, VideoInfo

DEFAULT_PAGE_SIZE = 100


def subtree_bounds(root: str) -> tuple[str, str]:
    """(low, high) such that low < path < high selects exactly the paths below directory `root` (any depth),
    in code point (binary) order, so an index on path serves it: '0' is the character after '/'."""
    prefix = root.rstrip("/") + "/"
    return prefix, prefix[:-1] + "0"


def effective_page_size(value: int) -> int:
    """The page size a listing uses for a requested one: 0 means the default, larger than the maximum is capped,
    negative is InvalidArgument."""
    if value < 0:
        raise InvalidArgument(f"page_size must not be negative, got {value}", field="page_size")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


# What the library knew about a path before this scan: (path, size, mtime_ns, missing 0/1, failed 0/1), failed
# meaning its last probe failed. A plain tuple, as the database returns it: a rescan loads 100,000 of them, and
# named tuples would double the cost.
KnownFile = tuple[str, int, int, int, int]


class VideoStatus(enum.IntEnum):
    """What the library knows of a file now; values equal reelscan.v1.VideoStatus. Each entry has exactly one."""

    OK = 1  # on disk at the latest scan of its directory, last probe succeeded
    FAILED = 2  # on disk at the latest scan of its directory, last probe failed
    MISSING = 3  # not found by the latest scan of its directory, whatever its last probe said


@dataclass(frozen=True, slots=True)
class ProbedFile:
    """One probe's outcome, ready to store. `info` is None for a failed probe (then `error` and `error_kind` say
    why; the kind is ignored for a successful probe)."""

    path: str  # library_path form
    size: int
    mtime_ns: int
    info: MediaInfo | None
    error: str = ""
    error_kind: ProbeErrorKind = ProbeErrorKind.PROBE_FAILED


@dataclass(frozen=True, slots=True)
class ScanErrorRecord:
    job_id: str
    path: str
    kind: ProbeErrorKind
    reason: str
    create_time: float
    id: int = 0  # assigned by the store; orders a job's errors


@dataclass(frozen=True, slots=True)
class Video:
    """A library entry as the API shows it: a video, or a file whose last probe failed (`failed`: then the media
    fields are empty, `failure_reason` and `failure_kind` say why, and `probe_time` is when it was last tried)."""

    id: str
    path: str
    file_name: str
    container_format: str
    size: int
    mtime_ns: int
    duration_us: int | None
    bit_rate: int
    video: VideoInfo | None
    audio: tuple[AudioInfo, ...]
    subtitle_count: int
    subtitle_languages: tuple[str, ...]
    creation_time_us: int | None
    missing: bool
    probe_time: float
    create_time: float
    failed: bool = False
    failure_reason: str = ""
    failure_kind: ProbeErrorKind | None = None  # None: succeeded, or failed before kinds were stored
    # Since media_info.PROBE_VERSION 2 (empty for rows probed before, until the next scan probes them again).
    subtitles: tuple[SubtitleInfo, ...] = ()
    title: str = ""
    has_cover_art: bool = False
    chapter_count: int = 0
    chapters: tuple[Chapter, ...] = ()

    @property
    def status(self) -> VideoStatus:
        if self.missing:
            return VideoStatus.MISSING
        return VideoStatus.FAILED if self.failed else VideoStatus.OK


# ListVideos' container filter takes a format name as FFmpeg lists it in container_format ("mp4", "matroska",
# "mpegts", ...) or a file extension people use for it, mapped here to FFmpeg's name.
CONTAINER_ALIASES = {
    "mkv": "matroska",
    "mk3d": "matroska",
    "m4v": "mp4",
    "ts": "mpegts",
    "mts": "mpegts",
    "m2ts": "mpegts",
    "m2t": "mpegts",
    "wmv": "asf",
    "mpg": "mpeg",
    "vob": "mpeg",
    "ogv": "ogg",
    "rmvb": "rm",
    "divx": "avi",
    "f4v": "mp4",
}


def container_name(value: str) -> str:
    """The FFmpeg format name a container filter value stands for (lower case)."""
    name = value.strip().lower()
    return CONTAINER_ALIASES.get(name, name)


def details_json(info: MediaInfo) -> str:
    """The fields of PROBE_VERSION 2 that have no column of their own, as the stores keep them (one JSON text)."""
    v = info.video
    return json.dumps({**mi.details_to_json(info), "video": None if v is None else mi.video_details_to_json(v)})


def with_details(video: Video, details: str | dict[str, Any] | None) -> Video:
    """`video` (read from the older columns) completed with its stored details; as is for a row without them."""
    if not details:
        return video
    data = json.loads(details) if isinstance(details, str) else details
    v = video.video
    if v is not None and data.get("video"):
        v = replace(v, **mi.video_details_kwargs(data["video"]))
    return replace(video, video=v, **mi.details_from_json(data))


@dataclass(frozen=True, slots=True)
class VideoFilter:
    """ListVideos filters; all combine with AND. Empty/None/0 means no filter, but for `statuses`: empty means
    OK entries only (plus missing ones whose last probe succeeded with include_missing), as before statuses
    existed; with statuses, include_missing adds MISSING to them."""

    path_prefix: str = ""
    video_codec: str = ""
    min_duration_us: int | None = None
    max_duration_us: int | None = None
    min_height: int = 0
    query: str = ""
    include_missing: bool = False
    statuses: frozenset[VideoStatus] = frozenset()
    # Since PROBE_VERSION 2; all match media fields, so never FAILED entries.
    container: str = ""  # an FFmpeg format name (container_name applied), one of container_format's list
    audio_language: str = ""  # lower case; some audio stream has it
    subtitle_language: str = ""  # lower case; some subtitle stream has it
    hdr_format: str = ""  # one of media_info.HDR_FORMATS
    min_width: int = 0
    interlaced: bool | None = None
    has_subtitles: bool | None = None

    def fingerprint(self) -> str:
        fields: list[object] = [
            self.path_prefix,
            self.video_codec,
            self.min_duration_us,
            self.max_duration_us,
            self.min_height,
            self.query,
            self.include_missing,
        ]
        if self.statuses:  # only then: tokens issued before statuses existed stay valid
            fields.append(sorted(int(s) for s in self.statuses))
        media = [
            self.container,
            self.audio_language,
            self.subtitle_language,
            self.hdr_format,
            self.min_width,
            self.interlaced,
            self.has_subtitles,
        ]
        if any(x is not None and x != "" and not (type(x) is int and x == 0) for x in media):
            fields.append(media)  # only then, likewise: tokens issued before these filters stay valid
        return page_token.fingerprint(fields)

    def entry_terms(self) -> list[tuple[str | None, bool | None]]:
        """The entries this filter's statuses select, as OR-ed terms (probe status 'ok'/'failed', missing), None
        meaning either; [(None, None)] is every entry. As few terms as the selection allows, so that the common
        selections are one plain condition a store's index serves."""
        wanted = set(self.statuses)
        if wanted and self.include_missing:
            wanted.add(VideoStatus.MISSING)
        selected: dict[bool, set[str]] = {False: set(), True: set()}  # missing -> probe statuses selected
        if not wanted:
            selected[False].add("ok")
            if self.include_missing:
                selected[True].add("ok")
        else:
            if VideoStatus.OK in wanted:
                selected[False].add("ok")
            if VideoStatus.FAILED in wanted:
                selected[False].add("failed")
            if VideoStatus.MISSING in wanted:
                selected[True] |= {"ok", "failed"}
        both = {"ok", "failed"}
        if selected[False] == selected[True]:
            return [(None, None)] if selected[False] == both else [(s, None) for s in sorted(selected[False])]
        terms: list[tuple[str | None, bool | None]] = []
        for missing in (False, True):
            if selected[missing] == both:
                terms.append((None, missing))
            else:
                terms += [(s, missing) for s in sorted(selected[missing])]
        return terms


def entry_condition(flt: VideoFilter, missing: str, present: str) -> str | None:
    """The SQL condition for flt.entry_terms(), given each store's condition for a missing and a present entry
    (e.g. "missing = 1", "missing = 0"); None when every entry is selected. Only the closed set of probe statuses
    is written into the SQL: nothing from the request."""
    parts = []
    for status, is_missing in flt.entry_terms():
        conjunction = []
        if status is not None:
            conjunction.append("status = 'ok'" if status == "ok" else "status = 'failed'")
        if is_missing is not None:
            conjunction.append(missing if is_missing else present)
        if not conjunction:
            return None
        parts.append(" AND ".join(conjunction))
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(f"({p})" for p in parts) + ")"


def value_conditions(flt: VideoFilter, mark: str) -> tuple[list[str], list[Any]]:
    """The filter's conditions that read the same in every store's SQL (column against a value), with `mark` as
    the store's parameter placeholder ("?" or "%s"), and their parameters in order. Conditions that need a
    dialect of their own (path ranges, containers, languages, text search) stay with each store."""
    where: list[str] = []
    params: list[Any] = []
    for condition, value, wanted in (
        ("video_codec = ", flt.video_codec.lower(), bool(flt.video_codec)),
        ("duration_us >= ", flt.min_duration_us, flt.min_duration_us is not None),
        ("duration_us <= ", flt.max_duration_us, flt.max_duration_us is not None),
        ("height >= ", flt.min_height, flt.min_height > 0),
        ("width >= ", flt.min_width, flt.min_width > 0),
        ("hdr_format = ", flt.hdr_format, bool(flt.hdr_format)),
        ("interlaced = ", flt.interlaced, flt.interlaced is not None),
    ):
        if wanted:
            where.append(condition + mark)
            params.append(value)
    if flt.has_subtitles is not None:
        where.append("subtitle_count > 0" if flt.has_subtitles else "(subtitle_count = 0 AND status = 'ok')")
    return where, params
