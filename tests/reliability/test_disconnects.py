"""Disconnects: thousands of WatchJob streams opened on a running job and dropped abruptly, in every way a client
can drop them: cancelled (RST_STREAM), cut by closing the channel under them, expired by their deadline, and lost
with their process (SIGKILL: the socket just goes away). After each wave the job's watcher_count (GetJob) must
come back to zero, and the server's memory must not grow by more than 10 MB over the whole run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from reelscan.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from tests.helpers.server import ServerProcess
from tests.media import copy_clip
from tests.reliability.support import Client, record, rss_bytes, wait_until

RSS_GROWTH_LIMIT = 10 * 2**20
BATCH = 100  # streams open at the same time
MODES = ("cancel", "close-channel", "deadline", "kill-client")

# A client that opens streams, reports when each has its first message, and then waits to be killed.
_CHILD = """
import asyncio, sys
import grpc
from reelscan.v1 import job_service_pb2, job_service_pb2_grpc

async def main(address, job_id, count):
    channel = grpc.aio.insecure_channel(address)
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    calls = [stub.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id)) for _ in range(count)]
    await asyncio.gather(*(call.read() for call in calls))
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@dataclass
class Running:
    server: ServerProcess
    job_id: str


@pytest.fixture
def running(tmp_path: Path, clips: dict[str, Path]) -> Iterator[Running]:
    """A server with one scan job that stays RUNNING (each probe takes an hour) until the test cancels it."""
    root = tmp_path / "media"
    copy_clip(clips["mp4"], root / "slow.mp4")
    args = ["--probe-delay", "3600", "--probe-timeout", "7200", "--probe-workers", "1"]
    with ServerProcess(tmp_path / "reelscan.db", allow_roots=[root], extra_args=args) as server:
        with Client(server.address) as client:
            job = client.start(root).job
            wait_until(lambda: client.get(job.id).progress_detail.stage == job_pb2.JOB_STAGE_PROBING, 30)
        yield Running(server, job.id)
        with Client(server.address) as client:
            client.jobs.CancelJob(job_service_pb2.CancelJobRequest(job_id=job.id), timeout=10)
            assert client.wait(job.id, 30).state == job_pb2.JOB_STATE_CANCELLED


def watcher_count(client: Client, job_id: str) -> int:
    return client.get(job_id).watcher_count


async def open_streams(stub: job_service_pb2_grpc.JobServiceStub, job_id: str, count: int, **kw: object) -> list:
    """Opens `count` WatchJob streams and reads the first snapshot of each."""
    calls = [stub.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id), **kw) for _ in range(count)]
    firsts = await asyncio.gather(*(call.read() for call in calls))
    assert all(f.job_id == job_id and f.state == job_pb2.JOB_STATE_RUNNING for f in firsts)
    return calls


async def wave(address: str, job_id: str, mode: str, count: int, client: Client) -> None:
    """Opens and abruptly drops `count` streams, BATCH at a time, in the given way."""
    for start in range(0, count, BATCH):
        n = min(BATCH, count - start)
        channel = grpc.aio.insecure_channel(address)
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        try:
            if mode == "deadline":
                # Streams that simply expire (their first message may or may not have arrived by then).
                request = job_service_pb2.WatchJobRequest(job_id=job_id)
                calls = [stub.WatchJob(request, timeout=1.0) for _ in range(n)]
                codes = await asyncio.gather(*(call.code() for call in calls))
                assert set(codes) == {grpc.StatusCode.DEADLINE_EXCEEDED}
                continue
            calls = await open_streams(stub, job_id, n)
            if mode == "cancel":
                for call in calls:
                    call.cancel()
            # close-channel: drop the channel with the streams still open on it
        finally:
            await channel.close(grace=None)


def kill_client_wave(address: str, job_id: str, count: int, client: Client) -> None:
    """A client process opens `count` streams and is SIGKILLed with them open: its sockets just go away."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, address, job_id, str(count)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        assert watcher_count(client, job_id) == count
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)


KILLED_CLIENT_STREAMS = 1000  # streams per client process that is killed


def drop(address: str, job_id: str, mode: str, count: int, client: Client) -> float:
    """Opens and abruptly drops `count` streams in the given way; returns how long watcher_count took to reach 0."""
    if mode == "kill-client":
        for start in range(0, count, KILLED_CLIENT_STREAMS):
            kill_client_wave(address, job_id, min(KILLED_CLIENT_STREAMS, count - start), client)
    else:
        asyncio.run(wave(address, job_id, mode, count, client))
    started = time.monotonic()
    wait_until(lambda: watcher_count(client, job_id) == 0, 30, what=f"watchers dropped by {mode} to go")
    return time.monotonic() - started


def run_disconnects(running: Running, total: int) -> None:
    server, job_id = running.server, running.job_id
    per_mode = total // len(MODES)
    with Client(server.address) as client:
        # Warm-up: one wave of each kind, as many streams at once as the measured run opens, so that the server's
        # allocator and gRPC's buffers reach their working size first. What is measured is what stays afterwards.
        for mode in MODES:
            drop(
                server.address,
                job_id,
                mode,
                min(per_mode, KILLED_CLIENT_STREAMS if mode == "kill-client" else BATCH),
                client,
            )
        baseline = rss_bytes(server)
        started = time.monotonic()
        slowest_drain = max(drop(server.address, job_id, mode, per_mode, client) for mode in MODES)
        elapsed = time.monotonic() - started
        assert client.get(job_id).state == job_pb2.JOB_STATE_RUNNING
        assert client.serving()
        after = rss_bytes(server)
    growth = after - baseline
    label = f"disconnects ({per_mode * len(MODES)} WatchJob streams: {', '.join(MODES)})"
    record(f"{label}: time (s)", round(elapsed, 1))
    record(f"{label}: slowest return of watcher_count to 0 (s)", round(slowest_drain, 2))
    record(
        f"{label}: server RSS after warm-up / after / growth (MB)",
        f"{baseline / 2**20:.1f} / {after / 2**20:.1f} / {growth / 2**20:+.2f}",
    )
    assert growth < RSS_GROWTH_LIMIT, f"server RSS grew {growth / 2**20:.1f} MB"


def test_abrupt_disconnects_release_watchers(running: Running) -> None:
    run_disconnects(running, 1_000)


@pytest.mark.slow
def test_ten_thousand_abrupt_disconnects(running: Running) -> None:
    run_disconnects(running, 10_000)
