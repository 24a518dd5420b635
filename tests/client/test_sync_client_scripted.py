"""The sync client against a scripted channel (grpc_testing): retries, reconnects and error mapping for responses
a real server rarely produces (UNAVAILABLE mid-call, rich details, mismatched statuses, lost streams)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
import grpc_testing
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from reelscan.client import (
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    ReconnectPolicy,
    ReelscanClient,
    ResourceExhaustedError,
    RetryPolicy,
    UnavailableError,
)
from reelscan.client.errors import pack_details
from reelscan.v1 import job_pb2, job_service_pb2, library_pb2, scan_service_pb2

T = TypeVar("T")

JOBS = job_service_pb2.DESCRIPTOR.services_by_name["JobService"]
SCANS = scan_service_pb2.DESCRIPTOR.services_by_name["ScanService"]
LIBRARY = library_pb2.DESCRIPTOR.services_by_name["LibraryService"]
DETAILS_KEY = "grpc-status-details-bin"


class Scripted:
    """A ReelscanClient on a grpc_testing channel. Client calls block, so each runs in a worker thread while the
    test plays the server with take_* / terminate."""

    def __init__(self, **client_kwargs: Any) -> None:
        self.channel = grpc_testing.channel([JOBS, SCANS, LIBRARY], grpc_testing.strict_real_time())
        self.sleeps: list[float] = []
        self.client = ReelscanClient(channel=self.channel, sleep=self.sleeps.append, **client_kwargs)
        self._pool = ThreadPoolExecutor(max_workers=1)

    def call(self, fn: Callable[[], T]) -> Future[T]:
        return self._pool.submit(fn)

    def take(self, service: Any, method: str) -> tuple[dict[str, str], Any, Any]:
        metadata, request, rpc = self.channel.take_unary_unary(service.methods_by_name[method])
        return dict(metadata), request, rpc

    def take_stream(self, method: str = "WatchJob") -> tuple[dict[str, str], Any, Any]:
        metadata, request, rpc = self.channel.take_unary_stream(JOBS.methods_by_name[method])
        return dict(metadata), request, rpc

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    s = Scripted(token="t0ken", metadata=[("X-Request-Source", "tests")])
    yield s
    s.close()


def job(job_id: str = "j1", state: job_pb2.JobState = job_pb2.JOB_STATE_RUNNING, seq: int = 1) -> job_pb2.Job:
    return job_pb2.Job(id=job_id, state=state, seq=seq)


def update(seq: int, state: job_pb2.JobState = job_pb2.JOB_STATE_RUNNING, progress: float = 0.0) -> job_pb2.JobUpdate:
    return job_pb2.JobUpdate(job_id="j1", seq=seq, state=state, progress=progress)


def rich_trailer(code: int, message: str, *details: Any) -> tuple[tuple[str, bytes], ...]:
    status = status_pb2.Status(code=code, message=message, details=pack_details(*details))
    return ((DETAILS_KEY, status.SerializeToString()),)


def test_metadata_carries_the_bearer_token_and_custom_keys(scripted: Scripted) -> None:
    result = scripted.call(lambda: scripted.client.get_job("j1"))
    metadata, request, rpc = scripted.take(JOBS, "GetJob")
    rpc.terminate(job_service_pb2.GetJobResponse(job=job()), (), grpc.StatusCode.OK, "")
    assert result.result(5).id == "j1"
    assert request.job_id == "j1"
    assert metadata["authorization"] == "Bearer t0ken"
    assert metadata["x-request-source"] == "tests"


def test_unavailable_is_retried_with_growing_backoff_then_succeeds(scripted: Scripted) -> None:
    result = scripted.call(lambda: scripted.client.get_job("j1"))
    for _ in range(2):
        _, _, rpc = scripted.take(JOBS, "GetJob")
        rpc.terminate(None, (), grpc.StatusCode.UNAVAILABLE, "connection reset")
    _, _, rpc = scripted.take(JOBS, "GetJob")
    rpc.terminate(job_service_pb2.GetJobResponse(job=job()), (), grpc.StatusCode.OK, "")
    assert result.result(5).id == "j1"
    assert len(scripted.sleeps) == 2
    assert scripted.sleeps[1] > scripted.sleeps[0] > 0


def test_unavailable_gives_up_after_max_attempts(scripted: Scripted) -> None:
    result = scripted.call(lambda: scripted.client.get_job("j1"))
    for _ in range(RetryPolicy().max_attempts):
        _, _, rpc = scripted.take(JOBS, "GetJob")
        rpc.terminate(None, (), grpc.StatusCode.UNAVAILABLE, "server restarting")
    with pytest.raises(UnavailableError) as raised:
        result.result(5)
    assert raised.value.code is grpc.StatusCode.UNAVAILABLE
    assert raised.value.message == "server restarting"
    assert raised.value.method == "GetJob"


def test_retry_honours_the_servers_retry_info_hint(scripted: Scripted) -> None:
    hint = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=3))
    result = scripted.call(lambda: scripted.client.list_videos(limit=1).__next__())
    _, _, rpc = scripted.take(LIBRARY, "ListVideos")
    rpc.terminate(None, rich_trailer(code_pb2.UNAVAILABLE, "draining", hint), grpc.StatusCode.UNAVAILABLE, "draining")
    _, _, rpc = scripted.take(LIBRARY, "ListVideos")
    rpc.terminate(library_pb2.ListVideosResponse(videos=[library_pb2.Video(id="v1")]), (), grpc.StatusCode.OK, "")
    assert result.result(5).id == "v1"
    assert scripted.sleeps == [3.0]


def test_delete_is_not_retried_because_a_repeat_could_misreport_success(scripted: Scripted) -> None:
    result = scripted.call(lambda: scripted.client.delete_job("j1"))
    _, _, rpc = scripted.take(JOBS, "DeleteJob")
    rpc.terminate(None, (), grpc.StatusCode.UNAVAILABLE, "connection reset")
    with pytest.raises(UnavailableError):
        result.result(5)
    assert scripted.sleeps == []


def test_other_errors_are_not_retried(scripted: Scripted) -> None:
    result = scripted.call(lambda: scripted.client.cancel_job("j1"))
    _, _, rpc = scripted.take(JOBS, "CancelJob")
    rpc.terminate(None, (), grpc.StatusCode.FAILED_PRECONDITION, "job j1 already SUCCEEDED")
    with pytest.raises(FailedPreconditionError, match="already SUCCEEDED"):
        result.result(5)
    assert scripted.sleeps == []


def test_rich_status_details_are_decoded(scripted: Scripted) -> None:
    info = error_details_pb2.ErrorInfo(reason="INVALID_ARGUMENT", domain="reelscan.v1", metadata={"field": "path"})
    bad = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field="path", description="must be absolute")]
    )
    result = scripted.call(lambda: scripted.client.start_scan("media"))
    _, request, rpc = scripted.take(SCANS, "StartScan")
    assert request.path == "media" and request.recursive is True
    message = "path must be absolute"
    rpc.terminate(
        None, rich_trailer(code_pb2.INVALID_ARGUMENT, message, info, bad), grpc.StatusCode.INVALID_ARGUMENT, message
    )
    with pytest.raises(InvalidArgumentError) as raised:
        result.result(5)
    error = raised.value
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.error_info is not None and error.error_info.metadata["field"] == "path"
    assert [(v.field, v.description) for v in error.field_violations] == [("path", "must be absolute")]
    assert str(error) == "INVALID_ARGUMENT: path must be absolute"


def test_details_survive_a_status_that_disagrees_with_the_call(scripted: Scripted) -> None:
    # A proxy rewrote the message: grpc_status.from_call rejects the mismatch, the client still decodes details.
    info = error_details_pb2.ErrorInfo(reason="RESOURCE_EXHAUSTED", domain="reelscan.v1")
    unknown = any_pb2.Any(type_url="type.googleapis.com/acme.Unknown", value=b"\x08\x01")
    result = scripted.call(lambda: scripted.client.get_job("j1"))
    _, _, rpc = scripted.take(JOBS, "GetJob")
    trailer = rich_trailer(code_pb2.RESOURCE_EXHAUSTED, "too many watchers", info)
    status = status_pb2.Status.FromString(trailer[0][1])
    status.details.append(unknown)
    rpc.terminate(
        None, ((DETAILS_KEY, status.SerializeToString()),), grpc.StatusCode.RESOURCE_EXHAUSTED, "rewritten by proxy"
    )
    with pytest.raises(ResourceExhaustedError) as raised:
        result.result(5)
    assert raised.value.message == "rewritten by proxy"
    assert raised.value.error_info is not None and raised.value.error_info.reason == "RESOURCE_EXHAUSTED"
    assert raised.value.details[-1] == unknown  # an unknown detail type is kept as its Any


def test_unknown_status_is_an_internal_error(scripted: Scripted) -> None:
    result = scripted.call(lambda: scripted.client.get_video("/media/a.mp4"))
    _, request, rpc = scripted.take(LIBRARY, "GetVideo")
    assert request.WhichOneof("video") == "path"
    rpc.terminate(None, (), grpc.StatusCode.UNKNOWN, "Exception calling application")
    with pytest.raises(InternalError) as raised:
        result.result(5)
    assert raised.value.code is grpc.StatusCode.UNKNOWN


def test_list_jobs_follows_page_tokens_and_stops_at_the_limit(scripted: Scripted) -> None:
    result = scripted.call(
        lambda: [j.id for j in scripted.client.list_jobs(limit=3, states=[job_pb2.JOB_STATE_FAILED])]
    )
    _, request, rpc = scripted.take(JOBS, "ListJobs")
    assert request.page_size == 3 and not request.page_token
    assert list(request.states) == [job_pb2.JOB_STATE_FAILED]
    rpc.terminate(
        job_service_pb2.ListJobsResponse(jobs=[job("a"), job("b")], next_page_token="p2"), (), grpc.StatusCode.OK, ""
    )
    _, request, rpc = scripted.take(JOBS, "ListJobs")
    assert request.page_token == "p2"
    rpc.terminate(
        job_service_pb2.ListJobsResponse(jobs=[job("c"), job("d")], next_page_token="p3"), (), grpc.StatusCode.OK, ""
    )
    assert result.result(5) == ["a", "b", "c"]


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_watch_reconnects_after_unavailable_and_drops_updates_already_seen(scripted: Scripted) -> None:
    seen: list[int] = []
    lost: list[str] = []

    def watch() -> None:
        for u in scripted.client.watch_job("j1", on_disconnect=lambda e: lost.append(e.message)):
            seen.append(u.seq)

    result = scripted.call(watch)
    metadata, request, rpc = scripted.take_stream()
    assert request.job_id == "j1" and metadata["authorization"] == "Bearer t0ken"
    rpc.send_response(update(1))
    rpc.send_response(update(2, progress=0.5))
    # grpc_testing, like a reset connection, drops responses not yet read when the call fails: let them be read.
    wait_for(lambda: len(seen) == 2)
    rpc.terminate((), grpc.StatusCode.UNAVAILABLE, "Socket closed")
    # The new stream opens with the snapshot the client already has (seq 2): it must not be delivered twice.
    _, _, rpc = scripted.take_stream()
    rpc.send_response(update(2, progress=0.5))
    rpc.send_response(update(3, job_pb2.JOB_STATE_SUCCEEDED, 1.0))
    rpc.terminate((), grpc.StatusCode.OK, "")
    result.result(5)
    assert seen == [1, 2, 3]
    assert lost == ["Socket closed"]
    assert len(scripted.sleeps) == 1


def test_watch_resumes_when_the_stream_ends_before_the_terminal_state(scripted: Scripted) -> None:
    # A server shutting down ends watch streams with OK; that is not the end of the job.
    result = scripted.call(lambda: [u.state for u in scripted.client.watch_job("j1")])
    _, _, rpc = scripted.take_stream()
    rpc.send_response(update(4))
    rpc.terminate((), grpc.StatusCode.OK, "")
    _, _, rpc = scripted.take_stream()
    rpc.send_response(update(5, job_pb2.JOB_STATE_CANCELLED))
    rpc.terminate((), grpc.StatusCode.OK, "")
    assert result.result(5) == [job_pb2.JOB_STATE_RUNNING, job_pb2.JOB_STATE_CANCELLED]


def test_watch_delivers_a_terminal_update_even_with_a_stale_seq(scripted: Scripted) -> None:
    # After a crash the server's stored seq can lag what it had streamed; the final state must still arrive.
    seen: list[tuple[int, int]] = []
    result = scripted.call(lambda: seen.extend((u.seq, u.state) for u in scripted.client.watch_job("j1")))
    _, _, rpc = scripted.take_stream()
    rpc.send_response(update(10))
    wait_for(lambda: len(seen) == 1)
    rpc.terminate((), grpc.StatusCode.UNAVAILABLE, "Connection reset by peer")
    _, _, rpc = scripted.take_stream()
    rpc.send_response(update(8))
    rpc.send_response(update(9, job_pb2.JOB_STATE_FAILED))
    rpc.terminate((), grpc.StatusCode.OK, "")
    result.result(5)
    assert seen == [(10, job_pb2.JOB_STATE_RUNNING), (9, job_pb2.JOB_STATE_FAILED)]


def test_watch_raises_not_found_without_retrying(scripted: Scripted) -> None:
    result = scripted.call(lambda: list(scripted.client.watch_job("nope")))
    _, _, rpc = scripted.take_stream()
    rpc.terminate((), grpc.StatusCode.NOT_FOUND, "job nope not found")
    with pytest.raises(NotFoundError):
        result.result(5)
    assert scripted.sleeps == []


def test_watch_gives_up_when_the_server_stays_away() -> None:
    s = Scripted(reconnect=ReconnectPolicy(give_up_after_s=0.0))
    try:
        result = s.call(lambda: list(s.client.watch_job("j1")))
        _, _, rpc = s.take_stream()
        rpc.terminate((), grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
        with pytest.raises(UnavailableError, match="failed to connect"):
            result.result(5)
    finally:
        s.close()


def test_wait_job_rides_out_a_restart_longer_than_the_retry_budget(scripted: Scripted) -> None:
    result = scripted.call(lambda: scripted.client.wait_job("j1", timeout=600))
    # More UNAVAILABLE answers than one call's retries: the wait goes on per the reconnect policy.
    for _ in range(RetryPolicy().max_attempts + 2):
        _, request, rpc = scripted.take(JOBS, "WaitJob")
        rpc.terminate(None, (), grpc.StatusCode.UNAVAILABLE, "server restarting")
    assert request.job_id == "j1" and 0 < request.timeout.seconds <= 60
    _, _, rpc = scripted.take(JOBS, "WaitJob")
    done = job(state=job_pb2.JOB_STATE_SUCCEEDED)
    rpc.terminate(job_service_pb2.WaitJobResponse(job=done, done=True), (), grpc.StatusCode.OK, "")
    assert result.result(5).state == job_pb2.JOB_STATE_SUCCEEDED


def test_wait_job_returns_the_unfinished_job_when_its_timeout_passes(scripted: Scripted) -> None:
    result = scripted.call(lambda: scripted.client.wait_job("j1", timeout=0.05))
    _, request, rpc = scripted.take(JOBS, "WaitJob")
    assert request.timeout.ToNanoseconds() <= 50_000_000
    time.sleep(0.06)
    rpc.terminate(job_service_pb2.WaitJobResponse(job=job(), done=False), (), grpc.StatusCode.OK, "")
    assert result.result(5).state == job_pb2.JOB_STATE_RUNNING
