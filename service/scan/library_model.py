"""The library's domain types and the pure rules every library store shares, whatever database is behind it.

Paths are stored as text, in library_path's form: the path itself unless it holds a backslash or bytes that are
not UTF-8 (escaped then, one-to-one): text columns and protobuf strings must be valid UTF-8.
"""

from __future__ import annotations

from dataclasses import dataclass

from reelscan.service.errors import InvalidArgument
from reelscan.service.jobs import page_token
from reelscan.service.scan.media_info import AudioInfo, MediaInfo, ProbeErrorKind, VideoInfo

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def library_path(fs_path: str) -> str:
    """The library's text form of a file-system path: the path itself, unless it holds a backslash or bytes that
    are not UTF-8 (which Python hands over as surrogate escapes). Then backslashes are doubled and each
    undecodable byte is written \\xNN, so that the form is valid UTF-8 (for SQLite text and protobuf strings) and
    one-to-one: a name that is not UTF-8 never takes the place of a file literally named with its escape.
    """
    if "\\" not in fs_path:
        if fs_path.isascii():
            return fs_path
        try:
            fs_path.encode("utf-8")
        except UnicodeEncodeError:
            pass
        else:
            return fs_path
    raw = fs_path.encode("utf-8", "surrogateescape")
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


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


# What the library knew about a path before this scan: (path, size, mtime_ns, missing 0/1). A plain tuple, as the
# database returns it: a rescan loads 100,000 of them, and named tuples would double the cost.
KnownFile = tuple[str, int, int, int]


@dataclass(frozen=True, slots=True)
class ProbedFile:
    """One probe's outcome, ready to store. `info` is None for a failed probe (then `error` says why)."""

    path: str  # library_path form
    size: int
    mtime_ns: int
    info: MediaInfo | None
    error: str = ""


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
    """A library entry as the API shows it."""

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


@dataclass(frozen=True, slots=True)
class VideoFilter:
    """ListVideos filters; all combine with AND. Empty/None/0 means no filter."""

    path_prefix: str = ""
    video_codec: str = ""
    min_duration_us: int | None = None
    max_duration_us: int | None = None
    min_height: int = 0
    query: str = ""
    include_missing: bool = False

    def fingerprint(self) -> str:
        return page_token.fingerprint(
            [
                self.path_prefix,
                self.video_codec,
                self.min_duration_us,
                self.max_duration_us,
                self.min_height,
                self.query,
                self.include_missing,
            ]
        )
