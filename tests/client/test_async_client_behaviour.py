"""Async client behaviour that needs precise control of the server side: deadlines, give-up timing, and closing a
watch stream when the caller stops iterating. A tiny in-test JobService stands in for the server; everything
end-to-end is tested against the real server elsewhere."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from reelscan.client import (
    AsyncReelscanClient,
    DeadlineExceededError,
    ReconnectPolicy,
    ReelscanError,
    RetryPolicy,
    UnavailableError,
)
from reelscan.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc


class SlowJobs(job_service_pb2_grpc.JobServiceServicer):
    """GetJob answers after `delay`; WatchJob streams RUNNING updates until the client goes away."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.watch_ended = asyncio.Event()

    async def GetJob(
        self, request: job_service_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> job_service_pb2.GetJobResponse:
        await asyncio.sleep(self.delay)
        return job_service_pb2.GetJobResponse(job=job_pb2.Job(id=request.job_id))

    async def WatchJob(
        self, request: job_service_pb2.WatchJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[job_pb2.JobUpdate]:
        try:
            for seq in range(1, 10_000):
                yield job_pb2.JobUpdate(job_id=request.job_id, seq=seq, state=job_pb2.JOB_STATE_RUNNING)
                await asyncio.sleep(0.01)
        finally:
            self.watch_ended.set()


@pytest.fixture
async def fake() -> AsyncIterator[tuple[str, SlowJobs]]:
    server = grpc.aio.server()
    servicer = SlowJobs(delay=5.0)
    job_service_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", servicer
    await server.stop(0)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_every_unary_call_gets_the_default_deadline(fake: tuple[str, SlowJobs]) -> None:
    address, _ = fake
    async with AsyncReelscanClient(address, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError) as raised:
            await client.get_job("j1")
        assert time.monotonic() - started < 3
        assert raised.value.code is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_a_call_can_override_the_deadline(fake: tuple[str, SlowJobs]) -> None:
    address, servicer = fake
    servicer.delay = 0.5
    async with AsyncReelscanClient(address, timeout=0.1) as client:
        job = await client.get_job("j1", rpc_timeout=10)
    assert job.id == "j1"


async def test_watch_stops_the_stream_when_the_caller_stops_iterating(fake: tuple[str, SlowJobs]) -> None:
    address, servicer = fake
    seqs: list[int] = []
    async with AsyncReelscanClient(address) as client:
        updates = client.watch_job("j1")
        async for update in updates:
            seqs.append(update.seq)
            if len(seqs) == 3:
                break
        await updates.aclose()
        # The server sees the call cancelled at once: a watcher that leaves must not linger on the server.
        await asyncio.wait_for(servicer.watch_ended.wait(), timeout=5)
    assert seqs == [1, 2, 3]


async def test_watch_gives_up_after_the_reconnect_budget() -> None:
    policy = ReconnectPolicy(initial_backoff_s=0.05, max_backoff_s=0.2, give_up_after_s=1.0)
    errors: list[ReelscanError] = []
    async with AsyncReelscanClient(f"127.0.0.1:{closed_port()}", reconnect=policy) as client:
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            async for _ in client.watch_job("j1", on_disconnect=errors.append):
                pass
        took = time.monotonic() - started
    assert 1.0 <= took < 10
    assert len(errors) >= 2  # it really retried, with backoff, before giving up


async def test_unary_calls_to_a_dead_server_retry_then_raise_unavailable() -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.01)
    async with AsyncReelscanClient(f"127.0.0.1:{closed_port()}", retry=policy) as client:
        with pytest.raises(UnavailableError) as raised:
            await client.get_job("j1")
    assert raised.value.method == "GetJob"


def test_a_client_made_outside_the_event_loop_works_inside_it() -> None:
    # grpc.aio binds a channel to the loop it is made in; the client defers that to its first call.
    client = AsyncReelscanClient(f"127.0.0.1:{closed_port()}", retry=RetryPolicy(max_attempts=1))

    async def use() -> None:
        async with client:
            with pytest.raises(UnavailableError):
                await client.get_job("j1")

    asyncio.run(use())
