"""14. One big scan spread over replicas (sharded scans): the coordination must not eat the scaling.

a) Probing bound by a per-file delay (`--probe-delay`, so cores are not the limit): one root of
   `shard_delay_files` hard-linked tiny clips, every file new, timed on the client from StartScan to the parent's
   terminal WatchJob update. 3 replicas with 1 probe worker each, the scan sharded (`SHARDING_ALWAYS`,
   `--shard-size shard_size`) vs 1 replica with 1 probe worker scanning it as one job (`SHARDING_NEVER`: the
   cheapest way one worker does the same work, with no shards to create, claim or follow). Target >= 2.5x.
b) Same-hardware honesty check, real probing on the 2 cores: `shard_real_files` real tiny clips, 2 replicas x 1
   worker sharded vs 1 replica x 2 workers unsharded (the same probe capacity in one process). Target >= 0.9x.
Each shape runs on a fresh PostgreSQL database and first scans a small root (workers up, codecs loaded). Rounds
alternate between the shapes (`scan_repeats`); the best round of each counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import replicas, rpc
from bench.harness import CACHE, Context, Row, log
from reelscan.v1 import job_pb2, job_service_pb2, scan_service_pb2

WARMUP_FILES = 12


@dataclass
class Sharded:
    seconds: float
    shards: int
    probed_by: dict[str, int]  # replica address -> files its shards probed


async def timed_scan(addresses: Sequence[str], root: Path, sharding: int, files: int) -> Sharded:
    """StartScan on the first replica, WatchJob of the parent on the last, until its terminal update."""
    async with rpc.channel(addresses[0]) as first, rpc.channel(addresses[-1]) as last:
        starter, watcher = rpc.Stubs(first), rpc.Stubs(last)
        started = time.perf_counter()
        request = scan_service_pb2.StartScanRequest(path=str(root), force=True, sharding=sharding)  # type: ignore[arg-type]
        job_id = (await starter.scans.StartScan(request)).job.id
        run = await rpc.watch_to_end(watcher, job_id, started)
        if run.last.state != job_pb2.JOB_STATE_SUCCEEDED or run.last.job.result.probed != files:
            raise RuntimeError(f"scan of {root} ended {rpc.state_name(run.last.state)}: {run.last.job.result}")
        listed = await watcher.jobs.ListJobs(job_service_pb2.ListJobsRequest(parent_id=job_id, page_size=1000))
    probed: Counter[str] = Counter()
    for shard in listed.jobs:
        probed[shard.replica_address] += shard.result.probed
    return Sharded(run.seconds, len(listed.jobs), dict(probed))


@contextlib.contextmanager
def shape(count: int, workers: int, extra: Sequence[str]) -> Iterator[list[str]]:
    """`count` replicas on a fresh database, warmed up; yields their addresses."""
    url = replicas.fresh_database(f"shards{count}")
    args = ["--probe-workers", str(workers), *extra]
    with replicas.replicas(url, count, [CACHE], args) as servers:
        addresses = [s.address for s in servers]
        (warm,) = replicas.linked_roots(1, WARMUP_FILES, "shard-warm")
        asyncio.run(timed_scan(addresses, warm, scan_service_pb2.SHARDING_ALWAYS, WARMUP_FILES))
        yield addresses


def scan_round(count: int, workers: int, root: Path, files: int, sharding: int, extra: Sequence[str]) -> Sharded:
    with shape(count, workers, extra) as addresses:
        return asyncio.run(timed_scan(addresses, root, sharding, files))


def _pairs(
    ctx: Context, root: Path, files: int, wide: tuple[int, int], narrow: tuple[int, int], extra: Sequence[str]
) -> tuple[Sharded, Sharded, list[Sharded], list[Sharded]]:
    sharded: list[Sharded] = []
    single: list[Sharded] = []
    always, never = scan_service_pb2.SHARDING_ALWAYS, scan_service_pb2.SHARDING_NEVER
    for i in range(ctx.sizes.scan_repeats):
        order = [(True, wide), (False, narrow)] if i % 2 == 0 else [(False, narrow), (True, wide)]
        for is_sharded, (count, workers) in order:
            run = scan_round(count, workers, root, files, always if is_sharded else never, extra)
            (sharded if is_sharded else single).append(run)
        log(
            f"  {files} files #{i + 1}: {wide[0]} replicas x {wide[1]} worker sharded {sharded[-1].seconds:.2f} s "
            f"({sharded[-1].shards} shards, probed per replica {sorted(sharded[-1].probed_by.values())}), "
            f"{narrow[0]} replica x {narrow[1]} workers {single[-1].seconds:.2f} s"
        )
    return min(sharded, key=lambda r: r.seconds), min(single, key=lambda r: r.seconds), sharded, single


def run(ctx: Context) -> list[Row]:
    reason = replicas.skip_reason()
    if reason:
        return replicas.skipped("sharded scans (14)", reason)
    sizes = ctx.sizes
    delay_files, real_files = sizes.shard_delay_files, sizes.shard_real_files
    delay = ["--probe-delay", f"{sizes.shard_probe_delay:g}", "--shard-size", str(sizes.shard_size)]
    (delay_root,) = replicas.linked_roots(1, delay_files, "shard-delay")
    best, ref, all_sharded, all_single = _pairs(ctx, delay_root, delay_files, (3, 1), (1, 1), delay)
    (real_root,) = replicas.linked_roots(1, real_files, "shard-real")
    real = ["--shard-size", str(max(1, real_files // 12))]
    best_real, ref_real, real_sharded, real_single = _pairs(ctx, real_root, real_files, (2, 1), (1, 2), real)
    return [
        Row(
            "sharded scan, probe-delay bound (14): 3 replicas x 1 worker vs 1 x 1",
            "files/s",
            delay_files / best.seconds,
            delay_files / ref.seconds,
            "1 replica, 1 worker, one job",
            target_ratio=2.5,
            note=(
                f"{delay_files:,} hard-linked tiny clips, --probe-delay {sizes.shard_probe_delay:g} s, "
                f"--shard-size {sizes.shard_size} ({best.shards} shards; probed per replica "
                f"{sorted(best.probed_by.values())}); StartScan -> parent's terminal update: {best.seconds:.2f} s vs "
                f"{ref.seconds:.2f} s (best of {len(all_sharded)})"
            ),
            extra={"sharded_s": [r.seconds for r in all_sharded], "single_s": [r.seconds for r in all_single]},
        ),
        Row(
            "sharded scan, real probing (14): 2 replicas x 1 worker vs 1 x 2",
            "files/s",
            real_files / best_real.seconds,
            real_files / ref_real.seconds,
            "1 replica, 2 workers, one job",
            target_ratio=0.9,
            note=(
                f"{real_files:,} real tiny clips on 2 cores, {best_real.shards} shards (probed per replica "
                f"{sorted(best_real.probed_by.values())}): {best_real.seconds:.2f} s vs {ref_real.seconds:.2f} s "
                f"(best of {len(real_sharded)})"
            ),
            extra={"sharded_s": [r.seconds for r in real_sharded], "single_s": [r.seconds for r in real_single]},
        ),
    ]
