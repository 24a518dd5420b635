"""The one table from domain error to status code (service/errors.py), exercised from both of its sides:

- an RPC whose handler raises a domain error ends with that error's code (and ErrorInfo / BadRequest details),
  through the real error mapping (api/status.py's add_servicer) on a real grpc.aio server and channel;
- a job whose handler raises a domain error ends FAILED with that code in Job.error (jobs/outcome.py), read back
  through the same server.

Both sides are checked against the codes the README documents, for every domain error class there is.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status

import reelscan.service
from reelscan.service import errors
from reelscan.service.api.job_servicer import JobServicer
from reelscan.service.api.status import add_servicer
from reelscan.service.jobs.engine import EngineClosed
from reelscan.service.jobs.model import JobKind
from reelscan.service.scan.shards import ShardFailed
from reelscan.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from tests.jobs.conftest import EngineFactory
from tests.jobs.handlers import SteppedHandler

# README, "Errors are gRPC-native": bad arguments INVALID_ARGUMENT, missing NOT_FOUND, outside the allowed roots
# PERMISSION_DENIED, wrong state FAILED_PRECONDITION, limits RESOURCE_EXHAUSTED, shutting down UNAVAILABLE, a part
# of the work failed (a shard of a sharded scan) ABORTED.
DOCUMENTED: dict[type[errors.ReelscanError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    EngineClosed: grpc.StatusCode.UNAVAILABLE,
    errors.Aborted: grpc.StatusCode.ABORTED,
    ShardFailed: grpc.StatusCode.ABORTED,
}
CASES = [pytest.param(cls, code, id=cls.__name__) for cls, code in DOCUMENTED.items()]
SPEC = {"path": "/media/a", "recursive": True, "force": False, "extensions": ["mp4"], "follow_symlinks": False}


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def test_every_domain_error_class_has_a_documented_code() -> None:
    """A new error class must be added to DOCUMENTED (and the README), so the tests below cover it."""
    for module in pkgutil.walk_packages(reelscan.service.__path__, "reelscan.service."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    service_classes = {c for c in _subclasses(errors.ReelscanError) if c.__module__.startswith("reelscan.service.")}
    assert service_classes == set(DOCUMENTED)


def test_codes_are_google_rpc_codes() -> None:
    """Domain code spells the numbers out (no gRPC imports there); they must be google.rpc.Code's and grpc's."""
    assert {c.name: c.value for c in errors.Code} == dict(code_pb2.Code.items())
    assert {c.name: c.value for c in errors.Code} == {c.name: c.value[0] for c in grpc.StatusCode}


class RaisingEngine:
    """Just enough of a JobEngine for JobServicer: every lookup raises `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def get(self, job_id: str) -> Any:
        raise self.error

    async def watch(self, job_id: str) -> AsyncIterator[Any]:
        raise self.error
        yield  # an async generator, like the engine's

    def watcher_count(self, job_id: str) -> int:
        return 0


async def serve(servicer: JobServicer) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    add_servicer(job_service_pb2_grpc.add_JobServiceServicer_to_server, servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def details(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, list[str]]:
    """The ErrorInfo of a failed call, and the fields of its BadRequest violations (if any)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None and status.code == error.code().value[0]
    info = error_details_pb2.ErrorInfo()
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return info, fields


@pytest.mark.parametrize(("cls", "code"), CASES)
async def test_rpc_raising_a_domain_error_ends_with_its_code(
    cls: type[errors.ReelscanError], code: grpc.StatusCode
) -> None:
    server, port = await serve(JobServicer(RaisingEngine(cls("it went wrong", field="job_id"))))  # type: ignore[arg-type]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = job_service_pb2_grpc.JobServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as unary:
                await stub.GetJob(job_service_pb2.GetJobRequest(job_id="j"), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as stream:
                async for _ in stub.WatchJob(job_service_pb2.WatchJobRequest(job_id="j"), timeout=5):
                    pass
    finally:
        await server.stop(0)
    for info in (unary.value, stream.value):
        assert info.code() is code, info.details()
        assert info.details() == "it went wrong"
        error_info, fields = details(info)
        assert (error_info.reason, error_info.domain) == (code.name, "reelscan.v1")
        assert error_info.metadata["field"] == "job_id"
        # A field violation belongs to bad arguments only.
        assert fields == (["job_id"] if code is grpc.StatusCode.INVALID_ARGUMENT else [])


@pytest.mark.parametrize(("cls", "code"), CASES)
async def test_job_whose_handler_raises_a_domain_error_ends_with_its_code(
    make_engine: EngineFactory, cls: type[errors.ReelscanError], code: grpc.StatusCode
) -> None:
    handler = SteppedHandler(1, auto_delay_s=0.0, fail_with=cls("the handler gave up"))
    engine = await make_engine(handler)
    server, port = await serve(JobServicer(engine))
    try:
        job, _ = await engine.submit(JobKind.SCAN, SPEC, timeout_s=None)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = job_service_pb2_grpc.JobServiceStub(channel)
            waited = await stub.WaitJob(job_service_pb2.WaitJobRequest(job_id=job.id), timeout=10)
    finally:
        await server.stop(0)
    assert waited.done and waited.job.state == job_pb2.JOB_STATE_FAILED
    assert (waited.job.error.code, waited.job.error.message) == (code.value[0], "the handler gave up")


async def test_job_whose_handler_has_a_bug_ends_internal(make_engine: EngineFactory) -> None:
    handler = SteppedHandler(1, auto_delay_s=0.0, fail_with=KeyError("oops"))
    engine = await make_engine(handler)
    job, _ = await engine.submit(JobKind.SCAN, SPEC, timeout_s=None)
    done = await engine.wait(job.id, 10)
    assert done.error is not None and done.error.code == grpc.StatusCode.INTERNAL.value[0]
    assert "KeyError" in done.error.message
