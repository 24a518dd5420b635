"""The blocking client, for scripts and threads: the same methods and semantics as AsyncReelscanClient.

GENERATED from async_client.py by `python -m reelscan.client.gen_sync`: edit async_client.py, then regenerate.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar, cast

import grpc

from reelscan.client.connection import (
    DEFAULT_ADDRESS,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    TlsOptions,
    make_options,
    sync_channel,
    sync_wait_ready,
)
from reelscan.client.errors import ReelscanError, UnavailableError, error_from_rpc
from reelscan.client.rpc import (
    CANCEL_JOB,
    DEFAULT_RECONNECT,
    DEFAULT_RETRY,
    DELETE_JOB,
    GET_JOB,
    GET_SERVER_INFO,
    GET_VIDEO,
    LIST_JOBS,
    LIST_SCAN_ERRORS,
    LIST_VIDEOS,
    NO_RETRY,
    START_SCAN,
    UNARY_METHODS,
    WAIT_CHUNK_S,
    WAIT_JOB,
    WATCH_JOB,
    Method,
    ReconnectPolicy,
    Req,
    Resp,
    RetryPolicy,
    WatchCursor,
    copy_message,
    get_video_request,
    list_jobs_request,
    list_videos_request,
    out_of_time,
    page_size_for,
    start_scan_request,
    wait_request,
)
from reelscan.v1 import job_pb2, job_service_pb2, library_pb2, scan_service_pb2, server_service_pb2

T = TypeVar("T")
UpdateCallback = Callable[[job_pb2.JobUpdate], object]
DisconnectCallback = Callable[[ReelscanError], object]


class ReelscanClient:
    """Talks to a reelscan server, blocking.

    Use it as `with ReelscanClient("host:port") as client: ...` (or call `close()`). The channel is
    opened on the first call. A bare HOST means port 50051. Unary calls get the
    client's `timeout` as their deadline unless a call passes `rpc_timeout`; idempotent calls are retried on
    UNAVAILABLE per `retry`. Failures raise reelscan.client.errors.ReelscanError subclasses. `channel` lets
    you pass a ready channel (e.g. grpc_testing's), which the client then does not close; `sleep` is how it
    waits between retries (injectable so tests of the backoff need not really wait).
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        tls: TlsOptions | bool | None = None,
        token: str | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        timeout: float | None = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy = DEFAULT_RETRY,
        reconnect: ReconnectPolicy = DEFAULT_RECONNECT,
        channel_options: Sequence[tuple[str, Any]] = (),
        channel: grpc.Channel | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = make_options(
            address, tls=tls, token=token, metadata=metadata, timeout=timeout, channel_options=channel_options
        )
        self.retry = retry
        self.reconnect = reconnect
        self._sleep = sleep
        self._owns_channel = channel is None
        self._channel = channel
        self._callables: dict[str, Any] = {}
        self._watch: Any = None
        if channel is not None:
            self._bind(channel)

    def _bind(self, channel: grpc.Channel) -> None:
        self._callables = {
            m.path: channel.unary_unary(
                m.path, request_serializer=m.request.SerializeToString, response_deserializer=m.response.FromString
            )
            for m in UNARY_METHODS
        }
        self._watch = channel.unary_stream(
            WATCH_JOB.path,
            request_serializer=WATCH_JOB.request.SerializeToString,
            response_deserializer=WATCH_JOB.response.FromString,
        )

    def _ensure_channel(self) -> None:
        # Made on first use, like the asyncio client's (which must make it inside the running event loop).
        if self._channel is None:
            self._channel = sync_channel(self.options)
            self._bind(self._channel)

    def __enter__(self) -> ReelscanClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel (unless it was passed in), cancelling calls still in flight."""
        if self._owns_channel and self._channel is not None:
            self._channel.close()
            self._channel = None

    def _call(self, method: Method[Req, Resp], request: Req, rpc_timeout: float | None = None) -> Resp:
        timeout = rpc_timeout if rpc_timeout is not None else self.options.timeout
        policy = self.retry if method.retryable else NO_RETRY
        backoff = policy.backoff()
        attempt = 1
        self._ensure_channel()
        while True:
            try:
                response = self._callables[method.path](request, timeout=timeout, metadata=self.options.call_metadata())
                return cast(Resp, response)
            except grpc.RpcError as rpc_error:
                error = error_from_rpc(rpc_error, method.name)
            if not isinstance(error, UnavailableError) or attempt >= policy.max_attempts:
                raise error
            attempt += 1
            self._sleep(max(backoff.next(), error.retry_delay or 0.0))

    def _paged(
        self,
        method: Method[Req, Resp],
        request: Req,
        page: Callable[[Resp], tuple[Sequence[T], str]],
        limit: int | None,
        rpc_timeout: float | None,
    ) -> Iterator[T]:
        request = copy_message(request)
        count = 0
        while True:
            items, token = page(self._call(method, request, rpc_timeout))
            for item in items:
                if limit is not None and count >= limit:
                    return
                yield item
                count += 1
            if not token or (limit is not None and count >= limit):
                return
            setattr(request, "page_token", token)  # noqa: B010 - every paged request has page_token

    def wait_for_server(self, timeout: float = DEFAULT_CONNECT_TIMEOUT_S) -> None:
        """Connects now. Raises UnavailableError if nothing answered at the address within `timeout` seconds (a
        host that drops packets, a port that accepts but never speaks gRPC). A refused connection or a failed TLS
        handshake returns at once: the next call then fails with gRPC's own, more precise, UNAVAILABLE."""
        self._ensure_channel()
        state = sync_wait_ready(self._channel, timeout)
        if state is grpc.ChannelConnectivity.SHUTDOWN:
            raise UnavailableError("the client is closed", method="connect")
        if state not in (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE):
            raise UnavailableError(
                f"no answer from {self.options.address} within {timeout:g} s (is a reelscan server listening there?)",
                method="connect",
            )

    # ScanService

    def start_scan(
        self,
        path: str | os.PathLike[str],
        *,
        recursive: bool = True,
        force: bool = False,
        extensions: Iterable[str] | None = None,
        follow_symlinks: bool = False,
        timeout: float | datetime.timedelta | None = None,
        rpc_timeout: float | None = None,
        sharding: str | None = None,
    ) -> scan_service_pb2.StartScanResponse:
        """Starts a scan of the server-side directory `path` and returns at once with its job (`response.job`).

        `timeout` is the job's time limit (server default when None), not the call's deadline (`rpc_timeout`).
        If a scan of the same root is already pending or running, that job is returned and `response.existing`
        is true. `sharding` ("auto", "always", "never"; None: auto) says whether a big scan may be split into
        shards that every replica helps to probe.
        """
        request = start_scan_request(
            path,
            recursive=recursive,
            force=force,
            extensions=extensions,
            follow_symlinks=follow_symlinks,
            sharding=sharding,
            timeout=timeout,
        )
        return self._call(START_SCAN, request, rpc_timeout)

    def scan_and_wait(
        self,
        path: str | os.PathLike[str],
        *,
        on_update: UpdateCallback | None = None,
        recursive: bool = True,
        force: bool = False,
        extensions: Iterable[str] | None = None,
        follow_symlinks: bool = False,
        timeout: float | datetime.timedelta | None = None,
        sharding: str | None = None,
    ) -> job_pb2.Job:
        """Starts a scan, watches it to the end (calling `on_update` with each JobUpdate) and
        returns the final Job. Reaching a terminal state is success for this call: check `job.state`."""
        started = self.start_scan(
            path,
            recursive=recursive,
            force=force,
            extensions=extensions,
            follow_symlinks=follow_symlinks,
            timeout=timeout,
            sharding=sharding,
        )
        return self.follow_job(started.job.id, on_update=on_update)

    def follow_job(self, job_id: str, *, on_update: UpdateCallback | None = None) -> job_pb2.Job:
        """Watches a job to its terminal state, calling `on_update` with each update; returns the final Job."""
        last: job_pb2.JobUpdate | None = None
        for update in self.watch_job(job_id):
            last = update
            if on_update is not None:
                on_update(update)
        if last is not None and last.HasField("job"):
            return last.job
        return self.get_job(job_id)

    # JobService

    def get_job(self, job_id: str, *, rpc_timeout: float | None = None) -> job_pb2.Job:
        response = self._call(GET_JOB, job_service_pb2.GetJobRequest(job_id=job_id), rpc_timeout)
        return response.job

    def list_jobs(
        self,
        *,
        states: Iterable[job_pb2.JobState] | None = None,
        kinds: Iterable[job_pb2.JobKind] | None = None,
        page_size: int = 0,
        limit: int | None = None,
        rpc_timeout: float | None = None,
        parent_id: str = "",
    ) -> Iterator[job_pb2.Job]:
        """Yields jobs newest first, fetching pages as needed; stops after `limit` jobs when given. Jobs of their
        own, or with `parent_id` the children (shards) of that job."""
        request = list_jobs_request(states, kinds, page_size_for(page_size, limit), parent_id)
        return self._paged(LIST_JOBS, request, lambda r: (r.jobs, r.next_page_token), limit, rpc_timeout)

    def cancel_job(self, job_id: str, *, rpc_timeout: float | None = None) -> job_pb2.Job:
        """Asks the server to cancel; returns the job as it is right after (a running job ends CANCELLED shortly
        after: use wait_job or watch_job to see it). A finished job raises FailedPreconditionError."""
        response = self._call(CANCEL_JOB, job_service_pb2.CancelJobRequest(job_id=job_id), rpc_timeout)
        return response.job

    def delete_job(self, job_id: str, *, rpc_timeout: float | None = None) -> None:
        """Deletes a finished job and its scan errors (FailedPreconditionError while it is pending or running)."""
        self._call(DELETE_JOB, job_service_pb2.DeleteJobRequest(job_id=job_id), rpc_timeout)

    def wait_job(self, job_id: str, *, timeout: float | None = None) -> job_pb2.Job:
        """Waits up to `timeout` seconds (None: for ever) for the job to finish and returns it as it then is.

        Long waits are split into WaitJob calls of at most WAIT_CHUNK_S, each with a deadline just past its wait.
        Like watch_job, it rides out a server restart (UNAVAILABLE) per the client's ReconnectPolicy.
        """
        if timeout is not None and timeout <= 0:
            return self.get_job(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = self.reconnect.backoff()
        last_heard = time.monotonic()
        while True:
            chunk = WAIT_CHUNK_S if deadline is None else min(WAIT_CHUNK_S, max(deadline - time.monotonic(), 0.001))
            try:
                # The call's deadline must outlast the server-side wait, or every long wait would end
                # DEADLINE_EXCEEDED.
                response = self._call(
                    WAIT_JOB, wait_request(job_id, chunk), chunk + (self.options.timeout or DEFAULT_TIMEOUT_S)
                )
            except UnavailableError:
                if out_of_time(time.monotonic(), last_heard, self.reconnect.give_up_after_s, deadline):
                    raise
                self._sleep(backoff.next())
                continue
            last_heard = time.monotonic()
            backoff.reset()
            if response.done or (deadline is not None and time.monotonic() >= deadline):
                return response.job

    def watch_job(
        self, job_id: str, *, on_disconnect: DisconnectCallback | None = None
    ) -> Generator[job_pb2.JobUpdate, None, None]:
        """Yields the job's updates, starting with its current snapshot, until (and including) the terminal one.

        A lost connection (UNAVAILABLE, or the stream ending before the terminal state, as a server shutting
        down does) is resumed by watching again after a backoff, per the client's ReconnectPolicy; updates
        already delivered (seq <= last seen) are dropped, so the caller sees each state once and in order.
        `on_disconnect` is called with the error before each reconnect attempt. Stop early by leaving the loop
        (or calling the generator's `close()`): the stream is cancelled at once.
        """
        cursor = WatchCursor()
        backoff = self.reconnect.backoff()
        last_heard = time.monotonic()
        request = job_service_pb2.WatchJobRequest(job_id=job_id)
        self._ensure_channel()
        while True:
            # No deadline: a watch lasts as long as the job. Keepalive notices a dead connection instead.
            call = self._watch(request, metadata=self.options.call_metadata())
            try:
                for update in call:
                    last_heard = time.monotonic()
                    backoff.reset()
                    if cursor.accept(update):
                        yield update
                    if cursor.finished:
                        return
                error: ReelscanError = UnavailableError("the watch stream ended before the job finished")
            except grpc.RpcError as rpc_error:
                error = error_from_rpc(rpc_error, WATCH_JOB.name)
                if not isinstance(error, UnavailableError):
                    raise error from None
            finally:
                call.cancel()
            if out_of_time(time.monotonic(), last_heard, self.reconnect.give_up_after_s, None):
                raise error
            if on_disconnect is not None:
                on_disconnect(error)
            self._sleep(backoff.next())

    # LibraryService

    def list_videos(
        self,
        *,
        path_prefix: str | os.PathLike[str] | None = None,
        video_codec: str | None = None,
        min_duration: float | datetime.timedelta | None = None,
        max_duration: float | datetime.timedelta | None = None,
        min_height: int | None = None,
        query: str | None = None,
        include_missing: bool = False,
        statuses: Iterable[library_pb2.VideoStatus] = (),
        container: str | None = None,
        audio_language: str | None = None,
        subtitle_language: str | None = None,
        hdr_format: library_pb2.HdrFormat | None = None,
        min_width: int | None = None,
        interlaced: bool | None = None,
        has_subtitles: bool | None = None,
        page_size: int = 0,
        limit: int | None = None,
        rpc_timeout: float | None = None,
    ) -> Iterator[library_pb2.Video]:
        """Yields library entries ordered by path, matching every filter given, fetching pages as needed.
        Durations are seconds (or timedeltas); `query` is a word-prefix search on the file name.

        `statuses` picks entries by VideoStatus: empty (the default) lists the videos that probed fine and are on
        disk (plus missing ones with `include_missing`); `[library_pb2.VIDEO_STATUS_FAILED]` lists the broken
        files, each with its `failure_reason`, `failure_kind` and `probe_time` (when it was last tried);
        `include_missing` then adds VIDEO_STATUS_MISSING. The media filters never match a FAILED entry.

        `container` is an FFmpeg format name or extension ("mp4", "mkv", "mpegts"), the languages ISO 639 tags
        (case-insensitive), `hdr_format` a library_pb2.HdrFormat; `interlaced` and `has_subtitles` filter only
        when not None."""
        request = list_videos_request(
            path_prefix=path_prefix,
            video_codec=video_codec,
            min_duration=min_duration,
            max_duration=max_duration,
            min_height=min_height,
            query=query,
            include_missing=include_missing,
            page_size=page_size_for(page_size, limit),
            statuses=statuses,
            container=container,
            audio_language=audio_language,
            subtitle_language=subtitle_language,
            hdr_format=hdr_format,
            min_width=min_width,
            interlaced=interlaced,
            has_subtitles=has_subtitles,
        )
        return self._paged(LIST_VIDEOS, request, lambda r: (r.videos, r.next_page_token), limit, rpc_timeout)

    def get_video(self, id_or_path: str | os.PathLike[str], *, rpc_timeout: float | None = None) -> library_pb2.Video:
        """One video by id, or by absolute path (a path-like, or a string containing a path separator)."""
        response = self._call(GET_VIDEO, get_video_request(id_or_path), rpc_timeout)
        return response.video

    def list_scan_errors(
        self, job_id: str, *, page_size: int = 0, limit: int | None = None, rpc_timeout: float | None = None
    ) -> Iterator[library_pb2.ScanError]:
        """Yields the per-file failures of a scan job in the order they happened."""
        request = library_pb2.ListScanErrorsRequest(job_id=job_id, page_size=page_size_for(page_size, limit))
        return self._paged(LIST_SCAN_ERRORS, request, lambda r: (r.errors, r.next_page_token), limit, rpc_timeout)

    # ServerService

    def server_info(self, *, rpc_timeout: float | None = None) -> server_service_pb2.ServerInfo:
        """What the server is and how it is configured: version, build revision, prober and FFmpeg versions,
        allowed roots, limits, database (never its password), replica id and address, start time and uptime."""
        response = self._call(GET_SERVER_INFO, server_service_pb2.GetServerInfoRequest(), rpc_timeout)
        return response.info
