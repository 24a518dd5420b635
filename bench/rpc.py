"""Thin gRPC helpers over the generated stubs (the benchmarks measure the server, not the client library)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import grpc

from reelscan.v1 import job_pb2, job_service_pb2, scan_service_pb2
from tests.helpers.stubs import Stubs

TERMINAL = frozenset(
    {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED, job_pb2.JOB_STATE_TIMED_OUT}
)
# Many streams share few channels in the fan-out benchmark; keep per-channel stream limits out of the way.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


def state_name(state: int) -> str:
    return str(job_pb2.JobState.Name(state))  # type: ignore[arg-type]


@dataclass
class ScanRun:
    """One scan watched from StartScan to its terminal update, timed on the client."""

    job_id: str
    seconds: float  # StartScan sent -> terminal update received
    updates: int
    last: Any  # the terminal JobUpdate
    update_times: list[float] = field(default_factory=list)

    @property
    def server_seconds(self) -> float:
        """start_time -> finish_time as the server recorded them (running time, without queueing)."""
        job = self.last.job
        return float(job.finish_time.ToNanoseconds() - job.start_time.ToNanoseconds()) / 1e9


def channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


async def start_scan(stubs: Stubs, path: str, *, force: bool = False) -> str:
    response = await stubs.scans.StartScan(scan_service_pb2.StartScanRequest(path=path, force=force))
    return str(response.job.id)


async def watch_to_end(stubs: Stubs, job_id: str, started: float) -> ScanRun:
    updates = 0
    last = None
    times = []
    async for update in stubs.jobs.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id)):
        updates += 1
        last = update
        times.append(time.perf_counter() - started)
        if update.state in TERMINAL:
            break
    if last is None or last.state not in TERMINAL:
        raise RuntimeError(f"watch of {job_id} ended without a terminal update (last: {last})")
    return ScanRun(job_id, time.perf_counter() - started, updates, last, times)


async def scan(address: str, path: str, *, force: bool = False) -> ScanRun:
    """StartScan, then WatchJob to the terminal update, on one channel. Raises unless the scan SUCCEEDED."""
    async with channel(address) as ch:
        stubs = Stubs(ch)
        started = time.perf_counter()
        job_id = await start_scan(stubs, path, force=force)
        run = await watch_to_end(stubs, job_id, started)
    if run.last.state != job_pb2.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"scan of {path} ended {state_name(run.last.state)}: {run.last.job.error}")
    return run
