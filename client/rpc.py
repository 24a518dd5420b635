"""What the sync and async clients share: the RPC table, request builders, retry/reconnect policies and the
WatchJob cursor. Nothing here does I/O, so both clients use it unchanged."""

from __future__ import annotations

import datetime
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf import duration_pb2, message

from reelscan.limits import MAX_PAGE_SIZE
from reelscan.v1 import job_pb2, job_service_pb2, library_pb2, scan_service_pb2, server_service_pb2

Req = TypeVar("Req", bound=message.Message)
Resp = TypeVar("Resp", bound=message.Message)

TERMINAL_STATES = frozenset(
    {
        job_pb2.JOB_STATE_SUCCEEDED,
        job_pb2.JOB_STATE_FAILED,
        job_pb2.JOB_STATE_CANCELLED,
        job_pb2.JOB_STATE_TIMED_OUT,
    }
)


def is_terminal(state: job_pb2.JobState) -> bool:
    """True for SUCCEEDED, FAILED, CANCELLED and TIMED_OUT: states a job never leaves."""
    return state in TERMINAL_STATES


@dataclass(frozen=True, slots=True)
class Method(Generic[Req, Resp]):
    """One RPC: its path, message types, and whether repeating it after UNAVAILABLE is safe."""

    service: str
    name: str
    request: type[Req]
    response: type[Resp]
    retryable: bool

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"


_SCAN = scan_service_pb2.DESCRIPTOR.services_by_name["ScanService"].full_name
_JOBS = job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name
_LIBRARY = library_pb2.DESCRIPTOR.services_by_name["LibraryService"].full_name
_SERVER = server_service_pb2.DESCRIPTOR.services_by_name["ServerService"].full_name

# StartScan is retryable because the server de-duplicates scans of the same root while one is pending or running,
# so a repeat after a lost response returns the same job. DeleteJob is not: a repeat of a delete that did happen
# would report NOT_FOUND for a success.
START_SCAN = Method(_SCAN, "StartScan", scan_service_pb2.StartScanRequest, scan_service_pb2.StartScanResponse, True)
GET_JOB = Method(_JOBS, "GetJob", job_service_pb2.GetJobRequest, job_service_pb2.GetJobResponse, True)
LIST_JOBS = Method(_JOBS, "ListJobs", job_service_pb2.ListJobsRequest, job_service_pb2.ListJobsResponse, True)
CANCEL_JOB = Method(_JOBS, "CancelJob", job_service_pb2.CancelJobRequest, job_service_pb2.CancelJobResponse, True)
DELETE_JOB = Method(_JOBS, "DeleteJob", job_service_pb2.DeleteJobRequest, job_service_pb2.DeleteJobResponse, False)
WAIT_JOB = Method(_JOBS, "WaitJob", job_service_pb2.WaitJobRequest, job_service_pb2.WaitJobResponse, True)
WATCH_JOB = Method(_JOBS, "WatchJob", job_service_pb2.WatchJobRequest, job_pb2.JobUpdate, True)
LIST_VIDEOS = Method(_LIBRARY, "ListVideos", library_pb2.ListVideosRequest, library_pb2.ListVideosResponse, True)
GET_VIDEO = Method(_LIBRARY, "GetVideo", library_pb2.GetVideoRequest, library_pb2.GetVideoResponse, True)
LIST_SCAN_ERRORS = Method(
    _LIBRARY, "ListScanErrors", library_pb2.ListScanErrorsRequest, library_pb2.ListScanErrorsResponse, True
)
GET_SERVER_INFO = Method(
    _SERVER, "GetServerInfo", server_service_pb2.GetServerInfoRequest, server_service_pb2.GetServerInfoResponse, True
)
UNARY_METHODS: tuple[Method[Any, Any], ...] = (
    START_SCAN,
    GET_JOB,
    LIST_JOBS,
    CANCEL_JOB,
    DELETE_JOB,
    WAIT_JOB,
    LIST_VIDEOS,
    GET_VIDEO,
    LIST_SCAN_ERRORS,
    GET_SERVER_INFO,
)

# The server caps one WaitJob at an hour; asking for less keeps each call well inside ordinary proxy idle limits.
WAIT_CHUNK_S = 50.0


class Backoff:
    """Exponential backoff with jitter: initial, initial*multiplier, ... capped at maximum."""

    def __init__(self, initial: float, maximum: float, multiplier: float = 2.0, jitter: float = 0.2) -> None:
        self._initial = initial
        self._maximum = maximum
        self._multiplier = multiplier
        self._jitter = jitter
        self._current = initial

    def next(self) -> float:
        delay = self._current
        self._current = min(self._current * self._multiplier, self._maximum)
        # Jitter keeps many clients that lost the same server from reconnecting in lockstep.
        return delay * (1 + random.uniform(-self._jitter, self._jitter))

    def reset(self) -> None:
        self._current = self._initial


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of idempotent unary calls that failed with UNAVAILABLE (server restarting, connection reset)."""

    max_attempts: int = 4
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0

    def backoff(self) -> Backoff:
        return Backoff(self.initial_backoff_s, self.max_backoff_s, self.multiplier)


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """How watch_job rides out a lost connection: retry with backoff, give up after `give_up_after_s` seconds
    without hearing from the server (None: never give up)."""

    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    give_up_after_s: float | None = 60.0

    def backoff(self) -> Backoff:
        return Backoff(self.initial_backoff_s, self.max_backoff_s, self.multiplier)


DEFAULT_RECONNECT = ReconnectPolicy()


def out_of_time(now: float, last_heard: float, give_up_after_s: float | None, deadline: float | None) -> bool:
    """Whether a long-lived call (watch, wait) should stop retrying: the server has been silent past the
    reconnect budget, or the caller's own deadline has passed."""
    if give_up_after_s is not None and now - last_heard > give_up_after_s:
        return True
    return deadline is not None and now >= deadline


class WatchCursor:
    """Decides which JobUpdates of a (possibly reconnected) watch to deliver.

    Every update is a full snapshot, so resuming is just watching again; the cursor drops what was already
    delivered (seq <= last seen), e.g. the snapshot that opens a new stream when nothing changed meanwhile.
    """

    def __init__(self) -> None:
        self.last_seq = -1
        self.finished = False

    def accept(self, update: job_pb2.JobUpdate) -> bool:
        if self.finished:
            return False
        terminal = is_terminal(update.state)
        # A terminal update is always delivered: after a crash the server's stored seq may lag what it streamed
        # before dying, and dropping the final state would leave the caller waiting forever.
        if update.seq <= self.last_seq and not terminal:
            return False
        self.last_seq = max(self.last_seq, update.seq)
        self.finished = terminal
        return True


def seconds_to_duration(seconds: float | datetime.timedelta) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    if isinstance(seconds, datetime.timedelta):
        duration.FromTimedelta(seconds)
    else:
        duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def start_scan_request(
    path: str | os.PathLike[str],
    *,
    recursive: bool,
    force: bool,
    extensions: Iterable[str] | None,
    follow_symlinks: bool,
    timeout: float | datetime.timedelta | None,
    sharding: str | None = None,
) -> scan_service_pb2.StartScanRequest:
    request = scan_service_pb2.StartScanRequest(
        path=os.fspath(path),
        recursive=recursive,
        force=force,
        extensions=[e.lstrip(".") for e in extensions or ()],
        follow_symlinks=follow_symlinks,
        sharding=sharding_value(sharding),
    )
    if timeout is not None:
        request.timeout.CopyFrom(seconds_to_duration(timeout))
    return request


def list_videos_request(
    *,
    path_prefix: str | os.PathLike[str] | None,
    video_codec: str | None,
    min_duration: float | datetime.timedelta | None,
    max_duration: float | datetime.timedelta | None,
    min_height: int | None,
    query: str | None,
    include_missing: bool,
    page_size: int,
    statuses: Iterable[library_pb2.VideoStatus] = (),
    container: str | None = None,
    audio_language: str | None = None,
    subtitle_language: str | None = None,
    hdr_format: library_pb2.HdrFormat | None = None,
    min_width: int | None = None,
    interlaced: bool | None = None,
    has_subtitles: bool | None = None,
) -> library_pb2.ListVideosRequest:
    """`statuses` empty: OK entries only (plus missing ones with `include_missing`), as the server does then."""
    request = library_pb2.ListVideosRequest(
        path_prefix=os.fspath(path_prefix) if path_prefix is not None else "",
        video_codec=video_codec or "",
        min_height=min_height or 0,
        query=query or "",
        include_missing=include_missing,
        page_size=page_size,
        statuses=list(statuses),
        container=container or "",
        audio_language=audio_language or "",
        subtitle_language=subtitle_language or "",
        hdr_format=hdr_format or library_pb2.HDR_FORMAT_UNSPECIFIED,
        min_width=min_width or 0,
    )
    if interlaced is not None:
        request.interlaced = interlaced
    if has_subtitles is not None:
        request.has_subtitles = has_subtitles
    if min_duration is not None:
        request.min_duration.CopyFrom(seconds_to_duration(min_duration))
    if max_duration is not None:
        request.max_duration.CopyFrom(seconds_to_duration(max_duration))
    return request


def get_video_request(id_or_path: str | os.PathLike[str]) -> library_pb2.GetVideoRequest:
    """A path-like, or a string with a path separator, names the video by path; anything else is an id."""
    if isinstance(id_or_path, os.PathLike) or "/" in id_or_path or os.sep in id_or_path:
        return library_pb2.GetVideoRequest(path=os.fspath(id_or_path))
    return library_pb2.GetVideoRequest(id=id_or_path)


SHARDING = {
    "auto": scan_service_pb2.SHARDING_AUTO,
    "always": scan_service_pb2.SHARDING_ALWAYS,
    "never": scan_service_pb2.SHARDING_NEVER,
}


def sharding_value(mode: str | None) -> scan_service_pb2.Sharding:
    """ "auto", "always" or "never" (None: the server's default, auto) as the request's enum value."""
    if mode is None:
        return scan_service_pb2.SHARDING_UNSPECIFIED
    try:
        return SHARDING[mode.lower()]
    except KeyError:
        raise ValueError(f"sharding must be one of {', '.join(SHARDING)}, not {mode!r}") from None


def list_jobs_request(
    states: Iterable[job_pb2.JobState] | None,
    kinds: Iterable[job_pb2.JobKind] | None,
    page_size: int,
    parent_id: str = "",
) -> job_service_pb2.ListJobsRequest:
    return job_service_pb2.ListJobsRequest(
        states=list(states or ()), kinds=list(kinds or ()), page_size=page_size, parent_id=parent_id
    )


def wait_request(job_id: str, chunk_s: float) -> job_service_pb2.WaitJobRequest:
    return job_service_pb2.WaitJobRequest(job_id=job_id, timeout=seconds_to_duration(chunk_s))


def page_size_for(page_size: int, limit: int | None) -> int:
    """The page size to ask for: the caller's, or just enough for `limit` items so a short listing is one call."""
    if page_size or limit is None:
        return page_size
    return max(1, min(limit, MAX_PAGE_SIZE))


def copy_message(request: Req) -> Req:
    clone = type(request)()
    clone.CopyFrom(request)
    return clone
