"""4. Unary throughput: GetJob calls per second against reelscan vs a bare grpc.aio echo server (target >= 0.8x).

Both servers are separate processes, driven by the same client harness (grpc.aio, `qps_concurrency` calls in
flight over 2 channels, for `qps_seconds` after a short warm-up), in alternating rounds; the best round of each
counts (neighbours on a shared machine only ever make a round slower). The echo server returns the very GetJobResponse
reelscan returned for the same (finished) job, so both serialize the same bytes. Each server's CPU use during the
run is recorded: a server near 1.0 CPU (one GIL) is the bottleneck; one well below it means the client was.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc
import psutil

from bench import corpus, reference, rpc
from bench.harness import CACHE, Context, Row, log, reelscan_server
from reelscan.v1 import job_service_pb2, job_service_pb2_grpc

CHANNELS = 2
WARMUP_S = 0.5


@dataclass
class Load:
    qps: float
    server_cpu: float  # CPU seconds per second used by the server process during the measured window
    client_cpu: float


async def _drive(address: str, job_id: str, seconds: float, concurrency: int) -> float:
    chans = [grpc.aio.insecure_channel(address) for _ in range(CHANNELS)]
    try:
        stubs = [job_service_pb2_grpc.JobServiceStub(ch) for ch in chans]
        request = job_service_pb2.GetJobRequest(job_id=job_id)
        count = 0
        stop = 0.0

        async def caller(i: int) -> None:
            nonlocal count
            stub = stubs[i % len(stubs)]
            while time.perf_counter() < stop:
                await stub.GetJob(request)
                count += 1

        stop = time.perf_counter() + WARMUP_S
        await asyncio.gather(*(caller(i) for i in range(concurrency)))
        count = 0
        start = time.perf_counter()
        stop = start + seconds
        await asyncio.gather(*(caller(i) for i in range(concurrency)))
        return count / (time.perf_counter() - start)
    finally:
        for ch in chans:
            await ch.close()


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def measure(address: str, pid: int, job_id: str, seconds: float, concurrency: int) -> Load:
    server, client = psutil.Process(pid), psutil.Process()
    s0, c0, t0 = _cpu(server), _cpu(client), time.perf_counter()
    qps = asyncio.run(_drive(address, job_id, seconds, concurrency))
    wall = time.perf_counter() - t0
    return Load(qps, (_cpu(server) - s0) / wall, (_cpu(client) - c0) / wall)


async def _finished_job(address: str) -> tuple[str, bytes]:
    root, _ = corpus.clips(12)
    run = await rpc.scan(address, str(root))
    async with rpc.channel(address) as ch:
        response = await rpc.Stubs(ch).jobs.GetJob(job_service_pb2.GetJobRequest(job_id=run.job_id))
    return run.job_id, response.SerializeToString()


def run(ctx: Context) -> list[Row]:
    sizes = ctx.sizes
    ours: list[Load] = []
    echo: list[Load] = []
    response_file = ctx.work / "getjob-response.bin"
    with reelscan_server(ctx.db("qps"), [CACHE]) as server:
        assert server.proc is not None
        job_id, payload = asyncio.run(_finished_job(server.address))
        response_file.write_bytes(payload)
        with reference.echo_server(response_file) as (echo_address, echo_pid):
            for i in range(sizes.qps_rounds):
                echo.append(measure(echo_address, echo_pid, job_id, sizes.qps_seconds, sizes.qps_concurrency))
                ours.append(measure(server.address, server.proc.pid, job_id, sizes.qps_seconds, sizes.qps_concurrency))
                log(f"  GetJob #{i + 1}: echo {echo[-1].qps:.0f} QPS, reelscan {ours[-1].qps:.0f} QPS")
    best = max(ours, key=lambda load: load.qps)
    ref = max(echo, key=lambda load: load.qps)
    return [
        Row(
            "GetJob QPS (4) vs grpc.aio echo",
            "QPS",
            best.qps,
            ref.qps,
            "bare grpc.aio echo server",
            target_ratio=0.8,
            note=(
                f"{sizes.qps_concurrency} calls in flight over {CHANNELS} channels; server CPU per call (less "
                f"noisy than QPS on a shared machine) reelscan {1e6 * best.server_cpu / best.qps:.0f} us, echo "
                f"{1e6 * ref.server_cpu / ref.qps:.0f} us; server CPU {best.server_cpu:.2f} / {ref.server_cpu:.2f}, "
                f"client CPU {best.client_cpu:.2f} / {ref.client_cpu:.2f}; response {len(payload)} bytes"
            ),
            extra={"reelscan": [load.__dict__ for load in ours], "echo": [load.__dict__ for load in echo]},
        )
    ]
