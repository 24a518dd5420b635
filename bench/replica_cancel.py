"""9. Cross-replica cancel latency: CancelJob sent to replica B for a job running on replica A -> the CANCELLED
update received on a WatchJob stream on B (target p99 <= 1 s over `cancel_tries` tries).

Two replicas on one fresh PostgreSQL database (default probe workers). Each try starts a forced scan of the
`fanout_files`-file tree of hard-linked clips (every file re-probed: a cold scan's work, long enough for the other
replica's stream to show it; submitted to each replica in turn, claimed by whichever has a free slot), finds the
replica running it (Job.replica_address), opens a watch on the other replica and, once that stream shows probing
under way (~5% done), sends CancelJob to that same replica. The timer runs from just before CancelJob
is sent to the CANCELLED update on B's stream: B stores the flag and NOTIFYs, A's listener stops the handler and
stores CANCELLED, B's listener re-reads the row and publishes it to its stream.

For comparison (informational), tries alternate with the same cancel sent to, and watched on, the owner itself.
"""

from __future__ import annotations

import asyncio
import time

from bench import corpus, replicas, rpc
from bench.cancel import probing_under_way
from bench.harness import CACHE, Context, Row, log, median, percentile
from reelscan.v1 import job_pb2, job_service_pb2

MS = 1000.0


async def cancel_once(addresses: list[str], submit_to: int, path: str, cross: bool) -> tuple[float, bool]:
    """One try; returns (seconds to the CANCELLED update, whether the watched replica was the owner)."""
    chans = {a: rpc.channel(a) for a in addresses}
    try:
        stubs = {a: rpc.Stubs(ch) for a, ch in chans.items()}
        submit = stubs[addresses[submit_to % len(addresses)]]
        job_id = await rpc.start_scan(submit, path, force=True)
        owner = await replicas.owner_address(submit, job_id)
        target = next(a for a in addresses if a != owner) if cross else owner
        watcher = stubs[target]
        sent = 0.0
        async for update in watcher.jobs.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id)):
            if update.state in rpc.TERMINAL:
                if not sent:
                    raise RuntimeError(f"scan ended {rpc.state_name(update.state)} before it could be cancelled")
                if update.state != job_pb2.JOB_STATE_CANCELLED:
                    raise RuntimeError(f"cancelled scan ended {rpc.state_name(update.state)}")
                if update.job.replica_address != owner:
                    raise RuntimeError(f"job moved from {owner} to {update.job.replica_address} meanwhile")
                return time.perf_counter() - sent, target == owner
            if not sent and update.state == job_pb2.JOB_STATE_RUNNING and probing_under_way(update):
                sent = time.perf_counter()
                await watcher.jobs.CancelJob(job_service_pb2.CancelJobRequest(job_id=job_id))
        raise RuntimeError("watch ended without a terminal update")
    finally:
        for ch in chans.values():
            await ch.close()


def run(ctx: Context) -> list[Row]:
    reason = replicas.skip_reason()
    if reason:
        return replicas.skipped("cross-replica cancel (9)", reason)
    sizes = ctx.sizes
    root = corpus.tree(sizes.fanout_files)
    warmup_root, _ = corpus.clips(12)
    url = replicas.fresh_database("cancel")
    cross: list[float] = []
    local: list[float] = []
    with replicas.replicas(url, 2, [CACHE]) as servers:
        addresses = [s.address for s in servers]
        for address in addresses:
            asyncio.run(rpc.scan(address, str(warmup_root), force=True))
        for i in range(sizes.cancel_tries):
            for is_cross, samples in ((True, cross), (False, local)):
                seconds, on_owner = asyncio.run(cancel_once(addresses, i, str(root), is_cross))
                if on_owner == is_cross:
                    raise RuntimeError("watched the wrong replica")
                samples.append(seconds)
                time.sleep(0.3)  # killed workers are being replaced: let every try start alike
    log(
        f"  cancel via the other replica: p50 {median(cross) * MS:.0f} ms, p99 {percentile(cross, 99) * MS:.0f} ms; "
        f"via the owner: p50 {median(local) * MS:.0f} ms, p99 {percentile(local, 99) * MS:.0f} ms"
    )
    return [
        Row("cross-replica cancel (9) p50, CancelJob on B, job on A", "ms", median(cross) * MS, higher_is_better=False),
        Row(
            "cross-replica cancel (9) p99, CancelJob on B, job on A",
            "ms",
            percentile(cross, 99) * MS,
            limit=1000,
            higher_is_better=False,
            note=(
                f"{len(cross)} tries, forced scans of {sizes.fanout_files:,} files cancelled at ~5% probed; "
                f"CancelJob sent to B -> CANCELLED update received on B; max {max(cross) * MS:.0f} ms"
            ),
            extra={"samples_ms": [s * MS for s in cross]},
        ),
        Row(
            "  same cancel sent to and watched on the owner (9), p99",
            "ms",
            percentile(local, 99) * MS,
            higher_is_better=False,
            note=f"{len(local)} tries alternating with the above; p50 {median(local) * MS:.0f} ms",
            extra={"samples_ms": [s * MS for s in local]},
        ),
    ]
