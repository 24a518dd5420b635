"""JobService's request limits at their one value (reelscan.limits): the page-size cap of ListJobs and the job-id
length of every RPC that takes one, over a real channel to an in-process server with the real error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from reelscan.limits import MAX_ID_CHARS, MAX_PAGE_SIZE
from reelscan.service.api.job_servicer import JobServicer
from reelscan.service.api.status import add_servicer
from reelscan.service.jobs.engine import JobEngine
from reelscan.service.jobs.model import JobKind
from reelscan.v1 import job_service_pb2, job_service_pb2_grpc
from tests.jobs.conftest import EngineFactory
from tests.jobs.handlers import SteppedHandler


@pytest.fixture
async def engine(make_engine: EngineFactory) -> JobEngine:
    # One job runs (and waits for steps that never come); the rest stay pending, so the queue must hold them.
    return await make_engine(SteppedHandler(1), max_concurrent=1, max_queued=MAX_PAGE_SIZE + 10)


@pytest.fixture
async def stub(engine: JobEngine) -> AsyncIterator[job_service_pb2_grpc.JobServiceStub]:
    server = grpc.aio.server()
    add_servicer(job_service_pb2_grpc.add_JobServiceServicer_to_server, JobServicer(engine), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield job_service_pb2_grpc.JobServiceStub(channel)
    finally:
        await server.stop(0)


async def test_list_jobs_page_size_is_capped(engine: JobEngine, stub: job_service_pb2_grpc.JobServiceStub) -> None:
    for i in range(MAX_PAGE_SIZE + 1):
        await engine.submit(JobKind.SCAN, {"path": f"/media/{i}"}, timeout_s=None)
    for requested in (5000, MAX_PAGE_SIZE + 1, MAX_PAGE_SIZE):
        response = await stub.ListJobs(job_service_pb2.ListJobsRequest(page_size=requested), timeout=10)
        assert len(response.jobs) == MAX_PAGE_SIZE and response.next_page_token, requested
        rest = await stub.ListJobs(
            job_service_pb2.ListJobsRequest(page_size=requested, page_token=response.next_page_token), timeout=10
        )
        assert len(rest.jobs) == 1 and not rest.next_page_token


async def test_job_id_length_limit_on_every_rpc(stub: job_service_pb2_grpc.JobServiceStub) -> None:
    for length, expected in (
        (MAX_ID_CHARS, grpc.StatusCode.NOT_FOUND),
        (MAX_ID_CHARS + 1, grpc.StatusCode.INVALID_ARGUMENT),
    ):
        job_id = "a" * length
        calls = {
            "GetJob": stub.GetJob(job_service_pb2.GetJobRequest(job_id=job_id), timeout=5),
            "CancelJob": stub.CancelJob(job_service_pb2.CancelJobRequest(job_id=job_id), timeout=5),
            "DeleteJob": stub.DeleteJob(job_service_pb2.DeleteJobRequest(job_id=job_id), timeout=5),
            "WaitJob": stub.WaitJob(job_service_pb2.WaitJobRequest(job_id=job_id), timeout=5),
        }
        codes = {}
        for name, call in calls.items():
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            codes[name] = info.value.code()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stub.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id), timeout=5):
                pass
        codes["WatchJob"] = info.value.code()
        assert codes == dict.fromkeys(codes, expected), length
