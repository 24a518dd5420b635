"""3. Watch fan-out: W concurrent WatchJob streams over C channels on one running cold scan.

Targets: every watcher gets the terminal update and at least one intermediate (RUNNING) one; the scan's rate with
the watchers is >= 0.8x the same scan without them; server RSS growth per open watcher <= 50 KB.

So that all W streams are open before the measured scan starts (and its whole run is watched), the server runs one
job at a time (--max-concurrent-jobs 1) and a blocker job goes first: a scan whose only file hangs its probe
(--fault-injection). The measured scan queues behind it (PENDING); the watchers connect and each receives its first
snapshot; the server's RSS is read before and after (nothing else moves meanwhile: the blocker only waits); then the
blocker is cancelled and the measured scan runs. The run without watchers is the same sequence with zero streams,
waiting with WaitJob. Both take their rate from the server's own start/finish times of the measured job.

The watchers live in this process (asyncio, grpc.aio), sharing the 2 cores with the server, as real clients
on the same host would.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import duration_pb2

from bench import corpus, rpc
from bench.harness import CACHE, KB, Context, Row, log, median, reelscan_server, rss_bytes
from reelscan.v1 import job_pb2, job_service_pb2


@dataclass
class WatcherLog:
    messages: int = 0
    running: int = 0  # intermediate updates: state RUNNING
    terminal_state: int = 0
    first: asyncio.Event = field(default_factory=asyncio.Event)
    error: str = ""


@dataclass
class FanoutRun:
    watchers: int
    files_per_s: float
    rss_before: int = 0
    rss_open: int = 0
    rss_after: int = 0
    logs: list[WatcherLog] = field(default_factory=list)
    connect_s: float = 0.0


async def watch(stubs: rpc.Stubs, job_id: str, wlog: WatcherLog) -> None:
    try:
        async for update in stubs.jobs.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id)):
            wlog.messages += 1
            wlog.first.set()
            if update.state == job_pb2.JOB_STATE_RUNNING:
                wlog.running += 1
            if update.state in rpc.TERMINAL:
                wlog.terminal_state = update.state
    except grpc.aio.AioRpcError as error:
        wlog.error = f"{error.code().name}: {error.details()}"
        wlog.first.set()


async def wait_stage(stubs: rpc.Stubs, job_id: str, stage: int) -> None:
    """Polls until the job runs in `stage` (the caller bounds the wait)."""
    while True:
        job = (await stubs.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id))).job
        if job.state == job_pb2.JOB_STATE_RUNNING and job.progress_detail.stage == stage:
            return
        if job.state in rpc.TERMINAL:
            raise RuntimeError(f"blocker job ended {rpc.state_name(job.state)}")
        await asyncio.sleep(0.05)


async def fanout_run(address: str, pid: int, blocker_root: Path, root: Path, watchers: int, channels: int) -> FanoutRun:
    chans = [rpc.channel(address) for _ in range(max(1, channels))]
    try:
        stubs = [rpc.Stubs(ch) for ch in chans]
        control = stubs[0]
        blocker = await rpc.start_scan(control, str(blocker_root), force=True)
        await asyncio.wait_for(wait_stage(control, blocker, job_pb2.JOB_STAGE_PROBING), 60)
        target = await rpc.start_scan(control, str(root))
        state = (await control.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=target))).job.state
        if state != job_pb2.JOB_STATE_PENDING:
            raise RuntimeError(f"measured scan is {rpc.state_name(state)}, expected it queued behind the blocker")
        await asyncio.sleep(0.5)
        run = FanoutRun(watchers, 0.0, rss_before=rss_bytes(pid))
        run.logs = [WatcherLog() for _ in range(watchers)]
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(watch(stubs[i % len(stubs)], target, wl)) for i, wl in enumerate(run.logs)]
        await asyncio.wait_for(asyncio.gather(*(wl.first.wait() for wl in run.logs)), 120)
        run.connect_s = time.perf_counter() - t0
        await asyncio.sleep(0.5)
        run.rss_open = rss_bytes(pid)
        await control.jobs.CancelJob(job_service_pb2.CancelJobRequest(job_id=blocker))
        if watchers:
            await asyncio.wait_for(asyncio.gather(*tasks), 600)
        wait = await control.jobs.WaitJob(
            job_service_pb2.WaitJobRequest(job_id=target, timeout=duration_pb2.Duration(seconds=600))
        )
        job = wait.job
        if job.state != job_pb2.JOB_STATE_SUCCEEDED:
            raise RuntimeError(f"measured scan ended {rpc.state_name(job.state)}: {job.error}")
        seconds = (job.finish_time.ToNanoseconds() - job.start_time.ToNanoseconds()) / 1e9
        run.files_per_s = job.result.discovered / seconds
        await asyncio.sleep(0.5)
        run.rss_after = rss_bytes(pid)
        return run
    finally:
        for ch in chans:
            await ch.close()


def one(ctx: Context, watchers: int) -> FanoutRun:
    sizes = ctx.sizes
    root = corpus.tree(sizes.fanout_files)
    blocker_root = corpus.hang_dir(0)
    warmup_root, _ = corpus.clips(12)
    args = ["--fault-injection", "--max-concurrent-jobs", "1", "--probe-timeout", "300"]
    args += ["--max-watchers", str(max(10_000, 2 * watchers))]
    with reelscan_server(ctx.db("fanout"), [CACHE], args) as server:
        assert server.proc is not None
        asyncio.run(rpc.scan(server.address, str(warmup_root)))
        run = asyncio.run(
            fanout_run(server.address, server.proc.pid, blocker_root, root, watchers, sizes.watch_channels)
        )
    log(
        f"  fan-out with {watchers} watchers: {run.files_per_s:.0f} files/s"
        + (f", connected in {run.connect_s:.1f} s" if watchers else "")
    )
    return run


def run(ctx: Context) -> list[Row]:
    sizes = ctx.sizes
    alone: list[FanoutRun] = []
    watched: list[FanoutRun] = []
    for _ in range(sizes.repeats):
        alone.append(one(ctx, 0))
        watched.append(one(ctx, sizes.watchers))
    base = max(r.files_per_s for r in alone)
    best = max(watched, key=lambda r: r.files_per_s)
    # Correctness and memory are judged on every watched run, not just the fastest.
    complete = min(
        sum(1 for wl in r.logs if wl.terminal_state == job_pb2.JOB_STATE_SUCCEEDED and wl.running >= 1 and not wl.error)
        for r in watched
    )
    errors = sorted({wl.error for r in watched for wl in r.logs if wl.error})
    per_watcher = max((r.rss_open - r.rss_before) / max(1, r.watchers) for r in watched)
    # After the streams end, RSS also holds what the scan itself grew by: subtract the unwatched runs' growth.
    scan_growth = min(r.rss_after - r.rss_before for r in alone)
    leaked = max((r.rss_after - r.rss_before - scan_growth) / max(1, r.watchers) for r in watched)
    messages = [wl.messages for r in watched for wl in r.logs]
    running = [wl.running for r in watched for wl in r.logs]
    w = sizes.watchers
    return [
        Row(
            f"watch fan-out (3): scan rate, {w} watchers vs none",
            "files/s",
            best.files_per_s,
            base,
            "same scan, no watchers",
            target_ratio=0.8,
            note=(
                f"{sizes.fanout_files:,}-file cold scan; {w} streams over {sizes.watch_channels} channels connected "
                f"in {best.connect_s:.1f} s; messages per watcher median {median(messages):.0f} "
                f"(min {min(messages)}), RUNNING updates median {median(running):.0f} (min {min(running)})"
            ),
            extra={
                "alone_files_per_s": [r.files_per_s for r in alone],
                "watched_files_per_s": [r.files_per_s for r in watched],
            },
        ),
        Row(
            "watch fan-out (3): watchers with terminal + >=1 intermediate",
            "watchers",
            complete,
            limit=w,
            note="errors: " + "; ".join(errors[:3]) if errors else "",
        ),
        Row(
            "watch fan-out (3): server RSS growth per watcher",
            "KB",
            per_watcher / KB,
            limit=50,
            higher_is_better=False,
            note=(
                f"still held after the streams ended (less the unwatched scan's own growth): {leaked / KB:.1f} KB "
                "per watcher"
            ),
            extra={
                "rss_before": [r.rss_before for r in watched],
                "rss_open": [r.rss_open for r in watched],
                "rss_after": [r.rss_after for r in watched],
            },
        ),
    ]
