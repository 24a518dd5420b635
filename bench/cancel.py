"""6. Cancel latency: CancelJob sent -> terminal CANCELLED update received on an open WatchJob stream.

- During a cold scan (target p99 < 1 s over `cancel_tries` tries): each try starts a forced scan of the clip
  corpus (every file re-probed: a cold scan's work), waits on the stream until probing is under way (a few percent
  done), then cancels.
- With a hung probe in flight: a directory of clips plus one file whose probe hangs (--fault-injection); the
  cancel is sent once every other file is done, so the only work left is the hung probe, which must be killed
  (the probe timeout is set far above the measurement).
The timer starts just before CancelJob is sent and stops when the CANCELLED update arrives on the stream; both
directions go through the server, as a client would see them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bench import corpus, rpc
from bench.harness import CACHE, Context, Row, log, median, percentile, reelscan_server
from reelscan.v1 import job_pb2, job_service_pb2

HANG_DIR_CLIPS = 40


async def cancel_once(address: str, path: str, ready: Callable[[job_pb2.JobUpdate], bool]) -> float:
    """Starts a forced scan of `path`, cancels it once `ready(update)`, returns seconds to the CANCELLED update."""
    async with rpc.channel(address) as ch:
        stubs = rpc.Stubs(ch)
        job_id = await rpc.start_scan(stubs, path, force=True)
        sent = 0.0
        async for update in stubs.jobs.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id)):
            if update.state in rpc.TERMINAL:
                if not sent:
                    raise RuntimeError(f"scan ended {rpc.state_name(update.state)} before it could be cancelled")
                if update.state != job_pb2.JOB_STATE_CANCELLED:
                    raise RuntimeError(f"cancelled scan ended {rpc.state_name(update.state)}")
                return time.perf_counter() - sent
            if not sent and update.state == job_pb2.JOB_STATE_RUNNING and ready(update):
                sent = time.perf_counter()
                await stubs.jobs.CancelJob(job_service_pb2.CancelJobRequest(job_id=job_id))
        raise RuntimeError("watch ended without a terminal update")


def probing_under_way(update: job_pb2.JobUpdate) -> bool:
    detail = update.progress_detail
    return detail.stage == job_pb2.JOB_STAGE_PROBING and detail.items_done >= max(1, detail.items_total // 20)


def only_hung_probe_left(update: job_pb2.JobUpdate) -> bool:
    detail = update.progress_detail
    return detail.stage == job_pb2.JOB_STAGE_PROBING and 0 < detail.items_total == detail.items_done + 1


def run(ctx: Context) -> list[Row]:
    sizes = ctx.sizes
    root, _ = corpus.clips(sizes.clips)
    hang_root = corpus.hang_dir(HANG_DIR_CLIPS)
    warmup_root, _ = corpus.clips(12)
    plain: list[float] = []
    hung: list[float] = []
    args = ["--fault-injection", "--probe-timeout", "120"]
    with reelscan_server(ctx.db("cancel"), [CACHE], args) as server:
        asyncio.run(rpc.scan(server.address, str(warmup_root)))
        for _ in range(sizes.cancel_tries):
            plain.append(asyncio.run(cancel_once(server.address, str(root), probing_under_way)))
            time.sleep(0.3)  # killed workers are being replaced: let every try start alike
        for _ in range(sizes.hung_cancel_tries):
            hung.append(asyncio.run(cancel_once(server.address, str(hang_root), only_hung_probe_left)))
            time.sleep(0.5)
    ms = 1000.0
    log(
        f"  cancel during scan: p50 {median(plain) * ms:.0f} ms, p99 {percentile(plain, 99) * ms:.0f} ms; "
        f"with hung probe: max {max(hung) * ms:.0f} ms"
    )
    return [
        Row(
            "cancel latency (6) p50, during cold scan",
            "ms",
            median(plain) * ms,
            higher_is_better=False,
        ),
        Row(
            "cancel latency (6) p99, during cold scan",
            "ms",
            percentile(plain, 99) * ms,
            limit=1000,
            higher_is_better=False,
            note=f"{len(plain)} tries, CancelJob sent -> CANCELLED update received; max {max(plain) * ms:.0f} ms",
            extra={"samples_ms": [s * ms for s in plain]},
        ),
        Row(
            "cancel latency (6) p99, hung probe in flight",
            "ms",
            percentile(hung, 99) * ms,
            limit=1000,
            higher_is_better=False,
            note=f"{len(hung)} tries; p50 {median(hung) * ms:.0f} ms; the hung worker is killed and replaced",
            extra={"samples_ms": [s * ms for s in hung]},
        ),
    ]
