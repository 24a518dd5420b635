"""JobService over a real gRPC channel to an in-process grpc.aio server: the real servicer and error-mapping
interceptor on a real engine and SQLite file, with test handlers whose work the test controls step by step.
(test_job_service_e2e.py drives real scans on the real server process.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from reelscan.service.api.job_servicer import JobServicer
from reelscan.service.api.status import add_servicer
from reelscan.service.errors import PermissionDenied
from reelscan.service.jobs.engine import JobEngine
from reelscan.service.jobs.model import JobKind
from reelscan.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from tests.jobs.conftest import EngineFactory
from tests.jobs.handlers import SteppedHandler, eventually

TOTAL = 4
SPEC = {"path": "/media/a", "recursive": True, "force": False, "extensions": ["mp4", "mkv"], "follow_symlinks": False}


@dataclass
class Api:
    engine: JobEngine
    handler: SteppedHandler
    stub: job_service_pb2_grpc.JobServiceStub

    async def submit(self) -> str:
        job, _ = await self.engine.submit(JobKind.SCAN, SPEC, timeout_s=None)
        return job.id

    async def get(self, job_id: str) -> job_pb2.Job:
        response: job_service_pb2.GetJobResponse = await self.stub.GetJob(
            job_service_pb2.GetJobRequest(job_id=job_id), timeout=5
        )
        return response.job


@pytest.fixture
async def api(make_engine: EngineFactory) -> AsyncIterator[Api]:
    handler = SteppedHandler(TOTAL)
    engine = await make_engine(handler, max_concurrent=1, max_watchers=4)
    server = grpc.aio.server()
    add_servicer(job_service_pb2_grpc.add_JobServiceServicer_to_server, JobServicer(engine), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Api(engine, handler, job_service_pb2_grpc.JobServiceStub(channel))
    finally:
        await engine.close()
        await server.stop(0)


class StreamRecorder:
    def __init__(self, call: AsyncIterator[job_pb2.JobUpdate]) -> None:
        self.seen: list[job_pb2.JobUpdate] = []
        self.call = call
        self.task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        async for update in self.call:
            self.seen.append(update)

    async def done(self) -> list[job_pb2.JobUpdate]:
        async with asyncio.timeout(10):
            await self.task
        return self.seen


async def test_progress_through_two_watch_streams_and_polling(api: Api) -> None:
    job_id = await api.submit()
    watchers = [StreamRecorder(api.stub.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id))) for _ in range(2)]
    await api.handler.started(job_id)
    await eventually(lambda: api.engine.watcher_count(job_id) == 2)
    polled: list[float] = []
    for done in range(1, TOTAL + 1):
        api.handler.step(job_id)

        async def reached(done: int = done) -> bool:
            polled.append((await api.get(job_id)).progress)
            if done == TOTAL:
                return all(w.seen and w.seen[-1].state == job_pb2.JOB_STATE_SUCCEEDED for w in watchers)
            return all(w.seen and w.seen[-1].progress_detail.items_done == done for w in watchers)

        await eventually(reached, what=f"{done}/{TOTAL} through the API")
    for w in watchers:
        seen = await w.done()
        seqs = [u.seq for u in seen]
        assert seqs == sorted(set(seqs))
        progress = [u.progress for u in seen]
        assert progress == sorted(progress)
        assert sorted({p for p in progress if 0 < p < 1}) == [i / TOTAL for i in range(1, TOTAL)]
        final = seen[-1]
        assert final.state == job_pb2.JOB_STATE_SUCCEEDED and final.progress == 1.0
        assert final.job.progress == 1.0 and final.job_id == job_id == final.job.id
        assert final.result.probed == TOTAL and final.job.result.probed == TOTAL
        assert final.job.progress_detail.stage == job_pb2.JOB_STAGE_DONE
        running = [u for u in seen if u.state == job_pb2.JOB_STATE_RUNNING and u.progress > 0]
        assert all(u.job.watcher_count == 2 for u in running)
        assert all(u.progress_detail.stage == job_pb2.JOB_STAGE_PROBING for u in running)
        assert running[0].progress_detail.current_item == "item-0"
    assert polled == sorted(polled)
    assert {p for p in polled if 0 < p < 1} == {i / TOTAL for i in range(1, TOTAL)}
    job = await api.get(job_id)
    assert job.progress == 1.0 and job.state == job_pb2.JOB_STATE_SUCCEEDED
    assert job.scan.path == "/media/a" and job.scan.recursive and list(job.scan.extensions) == ["mp4", "mkv"]
    assert job.kind == job_pb2.JOB_KIND_SCAN
    assert job.create_time.ToNanoseconds() <= job.start_time.ToNanoseconds() <= job.finish_time.ToNanoseconds()
    assert job.timeout.ToSeconds() == 30
    assert not job.HasField("error")
    await eventually(lambda: api.engine.watcher_count(job_id) == 0)
    assert (await api.get(job_id)).watcher_count == 0


async def test_cancel_running_delivers_cancelled_to_watchers(api: Api) -> None:
    job_id = await api.submit()
    watcher = StreamRecorder(api.stub.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id)))
    await api.handler.started(job_id)
    api.handler.step(job_id)
    response = await api.stub.CancelJob(job_service_pb2.CancelJobRequest(job_id=job_id), timeout=5)
    assert response.job.cancel_requested
    final = (await watcher.done())[-1]
    assert final.state == job_pb2.JOB_STATE_CANCELLED and final.job.cancel_requested
    again = await api.stub.CancelJob(job_service_pb2.CancelJobRequest(job_id=job_id), timeout=5)
    assert again.job.state == job_pb2.JOB_STATE_CANCELLED  # no-op
    # Pending: CANCELLED in the response itself.
    running, pending = await api.submit(), await api.submit()
    response = await api.stub.CancelJob(job_service_pb2.CancelJobRequest(job_id=pending), timeout=5)
    assert response.job.state == job_pb2.JOB_STATE_CANCELLED
    # Succeeded: FAILED_PRECONDITION.
    api.handler.step(running, TOTAL)
    waited = await api.stub.WaitJob(job_service_pb2.WaitJobRequest(job_id=running), timeout=5)
    assert waited.done and waited.job.state == job_pb2.JOB_STATE_SUCCEEDED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.stub.CancelJob(job_service_pb2.CancelJobRequest(job_id=running), timeout=5)
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_failed_job_carries_its_error_status(api: Api) -> None:
    api.handler.fail_with = PermissionDenied("outside the allowed roots")
    job_id = await api.submit()
    api.handler.step(job_id, TOTAL)
    waited = await api.stub.WaitJob(job_service_pb2.WaitJobRequest(job_id=job_id), timeout=5)
    assert waited.done and waited.job.state == job_pb2.JOB_STATE_FAILED
    assert waited.job.error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert waited.job.error.message == "outside the allowed roots"
    update = await anext(aiter(api.stub.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id))))
    assert update.error == waited.job.error


async def test_unknown_ids_are_not_found_on_every_rpc(api: Api) -> None:
    unknown = "0123456789abcdef0123456789abcdef"
    calls = [
        api.stub.GetJob(job_service_pb2.GetJobRequest(job_id=unknown), timeout=5),
        api.stub.CancelJob(job_service_pb2.CancelJobRequest(job_id=unknown), timeout=5),
        api.stub.DeleteJob(job_service_pb2.DeleteJobRequest(job_id=unknown), timeout=5),
        api.stub.WaitJob(job_service_pb2.WaitJobRequest(job_id=unknown), timeout=5),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in api.stub.WatchJob(job_service_pb2.WatchJobRequest(job_id=unknown), timeout=5):
            pass
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    assert api.engine.watcher_count(unknown) == 0


async def test_invalid_arguments(api: Api) -> None:
    job_id = await api.submit()
    for _ in range(3):
        await api.submit()
    _, token = await api.engine.list(states=(), kinds=(), page_size=1, page_token="")
    bad = [
        api.stub.GetJob(job_service_pb2.GetJobRequest(), timeout=5),
        api.stub.CancelJob(job_service_pb2.CancelJobRequest(), timeout=5),
        api.stub.DeleteJob(job_service_pb2.DeleteJobRequest(), timeout=5),
        api.stub.WaitJob(job_service_pb2.WaitJobRequest(), timeout=5),
        api.stub.WaitJob(
            job_service_pb2.WaitJobRequest(job_id=job_id, timeout=duration_pb2.Duration(seconds=-1)), timeout=5
        ),
        api.stub.ListJobs(job_service_pb2.ListJobsRequest(page_size=-1), timeout=5),
        api.stub.ListJobs(job_service_pb2.ListJobsRequest(page_token="garbage!"), timeout=5),
        api.stub.ListJobs(
            job_service_pb2.ListJobsRequest(page_token=token, states=[job_pb2.JOB_STATE_FAILED]), timeout=5
        ),
        api.stub.ListJobs(job_service_pb2.ListJobsRequest(states=[job_pb2.JOB_STATE_UNSPECIFIED]), timeout=5),
        api.stub.ListJobs(job_service_pb2.ListJobsRequest(states=[99]), timeout=5),  # type: ignore[list-item]
        api.stub.ListJobs(job_service_pb2.ListJobsRequest(kinds=[job_pb2.JOB_KIND_UNSPECIFIED]), timeout=5),
    ]
    for call in bad:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        status = rpc_status.from_call(info.value)
        assert status is not None
        fields = []
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                fields += [v.field for v in bad_request.field_violations]
        assert fields and fields[0] in {"job_id", "timeout", "page_size", "page_token", "states", "kinds"}
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in api.stub.WatchJob(job_service_pb2.WatchJobRequest(), timeout=5):
            pass
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_pagination_over_the_api(api: Api) -> None:
    ids = [await api.submit() for _ in range(7)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        response = await api.stub.ListJobs(job_service_pb2.ListJobsRequest(page_size=3, page_token=token), timeout=5)
        seen += [j.id for j in response.jobs]
        pages += 1
        token = response.next_page_token
        if not token:
            break
    assert seen == ids[::-1] and pages == 3
    everything = await api.stub.ListJobs(job_service_pb2.ListJobsRequest(), timeout=5)  # default page size (50)
    assert [j.id for j in everything.jobs] == ids[::-1] and not everything.next_page_token
    pending = await api.stub.ListJobs(
        job_service_pb2.ListJobsRequest(states=[job_pb2.JOB_STATE_PENDING], kinds=[job_pb2.JOB_KIND_SCAN]), timeout=5
    )
    assert [j.id for j in pending.jobs] == ids[:0:-1]  # all but the running one
    assert all(j.state == job_pb2.JOB_STATE_PENDING for j in pending.jobs)


async def test_wait_job_timeout_and_call_deadline(api: Api) -> None:
    job_id = await api.submit()
    await api.handler.started(job_id)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    response = await api.stub.WaitJob(
        job_service_pb2.WaitJobRequest(job_id=job_id, timeout=duration_pb2.Duration(nanos=300_000_000)), timeout=5
    )
    assert not response.done and response.job.state == job_pb2.JOB_STATE_RUNNING
    assert loop.time() - t0 >= 0.29
    # Default 60 s wait, but the call's own deadline is shorter: an answer (done=false), not DEADLINE_EXCEEDED.
    response = await api.stub.WaitJob(job_service_pb2.WaitJobRequest(job_id=job_id), timeout=0.5)
    assert not response.done
    api.handler.step(job_id, TOTAL)
    response = await api.stub.WaitJob(job_service_pb2.WaitJobRequest(job_id=job_id), timeout=5)
    assert response.done and response.job.state == job_pb2.JOB_STATE_SUCCEEDED


async def test_disconnected_watch_stream_is_unregistered(api: Api) -> None:
    job_id = await api.submit()
    call = api.stub.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id))
    first = await anext(aiter(call))
    assert first.job_id == job_id and first.job.watcher_count == 1
    assert api.engine.watcher_count(job_id) == 1
    call.cancel()
    await eventually(lambda: api.engine.watcher_count(job_id) == 0, what="server-side watcher cleanup")


async def test_watcher_limit_is_resource_exhausted(api: Api) -> None:
    job_id = await api.submit()
    calls = [api.stub.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id)) for _ in range(4)]
    for call in calls:
        await anext(aiter(call))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in api.stub.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id), timeout=5):
            pass
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    for call in calls:
        call.cancel()
    await eventually(lambda: api.engine.watcher_count(job_id) == 0)


async def test_delete_job(api: Api) -> None:
    job_id = await api.submit()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.stub.DeleteJob(job_service_pb2.DeleteJobRequest(job_id=job_id), timeout=5)
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    await api.stub.CancelJob(job_service_pb2.CancelJobRequest(job_id=job_id), timeout=5)
    await api.stub.WaitJob(job_service_pb2.WaitJobRequest(job_id=job_id), timeout=5)
    await api.stub.DeleteJob(job_service_pb2.DeleteJobRequest(job_id=job_id), timeout=5)
    assert api.handler.deleted == [job_id]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.get(job_id)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


async def test_shutdown_ends_watch_streams_unavailable(api: Api) -> None:
    job_id = await api.submit()
    watcher = StreamRecorder(api.stub.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id)))
    await eventually(lambda: api.engine.watcher_count(job_id) == 1)
    await api.engine.close()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await watcher.done()
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.get(job_id)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
