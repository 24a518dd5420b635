"""5. Responsiveness: GetJob latency p50/p99 while a cold scan runs vs idle (target: p99 busy <= 3x p99 idle).

One client makes sequential GetJob calls on one finished job (sync stub, one channel). Idle: nothing running, half
the calls before and half after the busy phase. Busy: the same call while a scan runs; only calls made while the
scan was RUNNING (checked before and after every 10) count. The scan is a cold scan of the clip corpus (fresh
database), then forced re-probes of it (`force`, the same work) until enough samples are in.

The probe workers use both cores during the busy phase, so part of the latency is waiting for a CPU. To show how
much, every reelscan call is paired with the same call to the echo server (bench/echo_server.py, its own process,
answering with reelscan's response bytes), idle and busy alike: its busy/idle ratio is what the machine alone does
to a server that does no work; reelscan's ratio beyond it is reelscan's own (event-loop time taken by the scan).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from bench import corpus, reference, rpc
from bench.harness import CACHE, Context, Row, log, percentile, reelscan_server
from reelscan.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc, scan_service_pb2, scan_service_pb2_grpc

MAX_SCANS = 6
CHECK_EVERY = 10
MS = 1000.0


def _timed(call: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


class Pair:
    """The same GetJob call to reelscan and to the echo server, made back to back."""

    def __init__(
        self, ours: job_service_pb2_grpc.JobServiceStub, echo: job_service_pb2_grpc.JobServiceStub, job_id: str
    ):
        request = job_service_pb2.GetJobRequest(job_id=job_id)
        self.ours = lambda: ours.GetJob(request)
        self.echo = lambda: echo.GetJob(request)

    def sample(self, count: int, ours: list[float], echo: list[float]) -> None:
        for _ in range(count):
            ours.append(_timed(self.ours))
            echo.append(_timed(self.echo))


def busy_samples(
    scans: scan_service_pb2_grpc.ScanServiceStub,
    jobs: job_service_pb2_grpc.JobServiceStub,
    pair: Pair,
    path: str,
    force: bool,
    ours: list[float],
    echo: list[float],
) -> None:
    """Samples `pair` while a scan of `path` runs. Every CHECK_EVERY pairs the scan's own state is read (not
    counted); samples since a check that saw it RUNNING are kept, the ones after it ended are dropped."""
    scan_request = job_service_pb2.GetJobRequest(
        job_id=scans.StartScan(scan_service_pb2.StartScanRequest(path=path, force=force)).job.id
    )
    while True:
        job = jobs.GetJob(scan_request).job
        if job.state in rpc.TERMINAL:
            if job.state != job_pb2.JOB_STATE_SUCCEEDED:
                raise RuntimeError(f"scan ended {rpc.state_name(job.state)}: {job.error}")
            return
        batch_ours: list[float] = []
        batch_echo: list[float] = []
        pair.sample(CHECK_EVERY, batch_ours, batch_echo)
        if job.state == job_pb2.JOB_STATE_RUNNING and jobs.GetJob(scan_request).job.state == job_pb2.JOB_STATE_RUNNING:
            ours += batch_ours
            echo += batch_echo


def run(ctx: Context) -> list[Row]:
    sizes = ctx.sizes
    root, _ = corpus.clips(sizes.clips)
    warmup_root, _ = corpus.clips(12)
    idle: list[float] = []
    busy: list[float] = []
    echo_idle: list[float] = []
    echo_busy: list[float] = []
    response_file = ctx.work / "latency-response.bin"
    half = sizes.latency_idle_calls // 2
    with reelscan_server(ctx.db("latency"), [CACHE]) as server, grpc.insecure_channel(server.address) as channel:
        scans = scan_service_pb2_grpc.ScanServiceStub(channel)
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        finished = scans.StartScan(scan_service_pb2.StartScanRequest(path=str(warmup_root))).job.id
        jobs.WaitJob(job_service_pb2.WaitJobRequest(job_id=finished))
        response_file.write_bytes(jobs.GetJob(job_service_pb2.GetJobRequest(job_id=finished)).SerializeToString())
        with reference.echo_server(response_file) as (echo_address, _), grpc.insecure_channel(echo_address) as ech:
            pair = Pair(jobs, job_service_pb2_grpc.JobServiceStub(ech), finished)
            pair.sample(50, [], [])  # warm-up
            pair.sample(half, idle, echo_idle)
            scans_run = 0
            while len(busy) < sizes.latency_idle_calls and scans_run < MAX_SCANS:
                busy_samples(scans, jobs, pair, str(root), scans_run > 0, busy, echo_busy)
                scans_run += 1
            pair.sample(sizes.latency_idle_calls - half, idle, echo_idle)
    p = {
        name: (percentile(samples, 50) * MS, percentile(samples, 99) * MS)
        for name, samples in (("idle", idle), ("busy", busy), ("echo_idle", echo_idle), ("echo_busy", echo_busy))
    }
    log("  GetJob p50/p99 ms: " + ", ".join(f"{name} {p50:.2f}/{p99:.2f}" for name, (p50, p99) in p.items()))
    echo_ratio = p["echo_busy"][1] / p["echo_idle"][1]
    return [
        Row(
            "GetJob p50 latency (5), cold scan vs idle",
            "ms",
            p["busy"][0],
            p["idle"][0],
            "same server idle",
            higher_is_better=False,
        ),
        Row(
            "GetJob p99 latency (5), cold scan vs idle",
            "ms",
            p["busy"][1],
            p["idle"][1],
            "same server idle",
            target_ratio=3.0,
            higher_is_better=False,
            note=(
                f"{len(busy)} calls during {scans_run} scan(s) of {sizes.clips} clips, {len(idle)} idle; busy max "
                f"{max(busy) * MS:.1f} ms. The echo server, called alternately under the same load: p99 "
                f"{p['echo_idle'][1]:.2f} ms idle, {p['echo_busy'][1]:.2f} ms busy ({echo_ratio:.2f}x): that much is "
                "the machine (CPU contention), the rest is reelscan's"
            ),
            extra={"percentiles_ms": p, "scans": scans_run},
        ),
        Row(
            "  echo server p99 under the same load (5), reference",
            "ms",
            p["echo_busy"][1],
            p["echo_idle"][1],
            "echo server idle",
            higher_is_better=False,
        ),
    ]
