"""10. Coordination overhead of several replicas, and PostgreSQL vs SQLite for one server.

a) `scaling_roots` scans of `scaling_root_files`-file roots (hard links to real clips, every file new), all
   submitted at once (StartScans in flight together, spread over the replicas in turn), timed from the first
   StartScan sent to the last job seen terminal (WaitJob on the replica it was submitted to):
   2 replicas with 1 probe worker each vs 1 replica with 2 probe workers (the reference: the same probe capacity
   in one process, with no claims to race for and no NOTIFY between processes), both on PostgreSQL, each run on a
   fresh database, same flags otherwise (default --max-concurrent-jobs 2 per replica). Target: the replicas take
   at most 1/0.9 of the reference's time (ratio of rates >= 0.9x). Informational: the same with 1 job at a time per
   replica, so both shapes have 2 jobs in flight.
b) A single-replica cold scan of `backend_scan_files` files (a hard-linked tree), StartScan -> terminal update:
   PostgreSQL vs SQLite (the reference: the embedded default), fresh databases, target >= 0.8x.
Each server first runs a small warm-up scan (probe workers up, codecs loaded). Rounds alternate between the shapes
(`scan_repeats` rounds); the best round of each counts, as in the other benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import duration_pb2

from bench import corpus, replicas, rpc
from bench.harness import CACHE, Context, Row, log, reelscan_server
from reelscan.v1 import job_pb2, job_service_pb2

WARMUP_ROOTS = 4  # small scans before the measured ones, submitted together so every replica gets some
WARMUP_FILES = 12


@dataclass
class Batch:
    seconds: float
    per_replica: dict[str, int]  # address -> jobs it ran

    def rate(self, files: int) -> float:
        return files / self.seconds


async def run_batch(addresses: Sequence[str], roots: Sequence[Path], expect_files: int) -> Batch:
    chans = [rpc.channel(a) for a in addresses]
    try:
        stubs = [rpc.Stubs(ch) for ch in chans]
        started = time.perf_counter()
        job_ids = await asyncio.gather(
            *(rpc.start_scan(stubs[i % len(stubs)], str(root)) for i, root in enumerate(roots))
        )

        async def wait(i: int, job_id: str) -> job_pb2.Job:
            request = job_service_pb2.WaitJobRequest(job_id=job_id, timeout=duration_pb2.Duration(seconds=600))
            job = (await stubs[i % len(stubs)].jobs.WaitJob(request)).job
            if job.state != job_pb2.JOB_STATE_SUCCEEDED:
                raise RuntimeError(f"scan of {roots[i]} ended {rpc.state_name(job.state)}: {job.error}")
            if job.result.new != expect_files:
                raise RuntimeError(f"scan of {roots[i]} stored {job.result.new} new of {expect_files} files")
            return job

        jobs = await asyncio.gather(*(wait(i, j) for i, j in enumerate(job_ids)))
        seconds = time.perf_counter() - started
    finally:
        for ch in chans:
            await ch.close()
    return Batch(seconds, dict(Counter(job.replica_address for job in jobs)))


@contextlib.contextmanager
def shape(count: int, workers: int, jobs_each: int) -> Iterator[list[str]]:
    """`count` replicas on a fresh database, warmed up; yields their addresses."""
    url = replicas.fresh_database(f"scale{count}")
    args = ["--probe-workers", str(workers), "--max-concurrent-jobs", str(jobs_each)]
    with replicas.replicas(url, count, [CACHE], args) as servers:
        addresses = [s.address for s in servers]
        warm = asyncio.run(run_batch(addresses, replicas.linked_roots(WARMUP_ROOTS, WARMUP_FILES, "w"), WARMUP_FILES))
        if len(warm.per_replica) < count:
            log(f"  (warm-up ran on {len(warm.per_replica)} of {count} replicas only)")
        yield addresses


def scale_round(count: int, workers: int, jobs_each: int, roots: list[Path], files: int) -> Batch:
    with shape(count, workers, jobs_each) as addresses:
        return asyncio.run(run_batch(addresses, roots, files))


def single_scan(db: Path | str, root: Path) -> float:
    """Seconds for one cold scan of `root` on one server (fresh database), StartScan -> terminal update."""
    warmup_root, _ = corpus.clips(WARMUP_FILES)
    with reelscan_server(db, [CACHE], replicas.replica_args() if isinstance(db, str) else []) as server:
        asyncio.run(rpc.scan(server.address, str(warmup_root)))
        run = asyncio.run(rpc.scan(server.address, str(root)))
    return run.seconds


def run(ctx: Context) -> list[Row]:
    reason = replicas.skip_reason()
    if reason:
        return replicas.skipped("replica scaling (10)", reason)
    sizes = ctx.sizes
    roots = replicas.linked_roots(sizes.scaling_roots, sizes.scaling_root_files)
    total_files = sizes.scaling_roots * sizes.scaling_root_files
    tree = corpus.tree(sizes.backend_scan_files)
    one: list[Batch] = []
    two: list[Batch] = []
    two_serial: list[Batch] = []
    sqlite: list[float] = []
    postgres: list[float] = []
    for i in range(sizes.scan_repeats):
        one.append(scale_round(1, 2, 2, roots, sizes.scaling_root_files))
        two.append(scale_round(2, 1, 2, roots, sizes.scaling_root_files))
        two_serial.append(scale_round(2, 1, 1, roots, sizes.scaling_root_files))
        log(
            f"  {sizes.scaling_roots} scans #{i + 1}: 1 replica x 2 workers {one[-1].seconds:.2f} s, "
            f"2 replicas x 1 worker {two[-1].seconds:.2f} s {sorted(two[-1].per_replica.values())}, "
            f"same with 1 job each {two_serial[-1].seconds:.2f} s {sorted(two_serial[-1].per_replica.values())}"
        )
        sqlite.append(single_scan(ctx.db("backend-sqlite"), tree))
        postgres.append(single_scan(replicas.fresh_database("single"), tree))
        log(f"  {sizes.backend_scan_files} files #{i + 1}: SQLite {sqlite[-1]:.2f} s, PostgreSQL {postgres[-1]:.2f} s")
    ref = min(one, key=lambda b: b.seconds)
    best = min(two, key=lambda b: b.seconds)
    best_serial = min(two_serial, key=lambda b: b.seconds)
    n, f = sizes.scaling_roots, sizes.scaling_root_files
    sqlite_rate = sizes.backend_scan_files / min(sqlite)
    pg_rate = sizes.backend_scan_files / min(postgres)
    return [
        Row(
            f"{n} scans at once (10): 2 replicas x 1 worker vs 1 x 2",
            "files/s",
            best.rate(total_files),
            ref.rate(total_files),
            "1 replica, 2 probe workers",
            target_ratio=0.9,
            note=(
                f"{n} roots of {f} hard-linked clips ({total_files:,} files), all StartScans at once, first sent -> "
                f"last terminal: {best.seconds:.2f} s vs {ref.seconds:.2f} s (best of {len(two)}); jobs per replica "
                f"{sorted(best.per_replica.values())}; PostgreSQL, fresh database per run, --max-concurrent-jobs 2 "
                "per replica"
            ),
            extra={
                "one_replica_s": [b.seconds for b in one],
                "two_replicas_s": [b.seconds for b in two],
                "two_replicas_per_replica": [b.per_replica for b in two],
            },
        ),
        Row(
            "  same, 1 job at a time per replica (10)",
            "files/s",
            best_serial.rate(total_files),
            ref.rate(total_files),
            "1 replica, 2 probe workers",
            note=(
                f"--max-concurrent-jobs 1 per replica (2 jobs in flight in both shapes): {best_serial.seconds:.2f} s; "
                f"jobs per replica {sorted(best_serial.per_replica.values())}"
            ),
            extra={
                "two_replicas_s": [b.seconds for b in two_serial],
                "per_replica": [b.per_replica for b in two_serial],
            },
        ),
        Row(
            f"cold scan of {sizes.backend_scan_files:,} files (10): PostgreSQL vs SQLite",
            "files/s",
            pg_rate,
            sqlite_rate,
            "same server on SQLite",
            target_ratio=0.8,
            note=(
                f"one server, fresh database, hard-linked tree, StartScan -> terminal update; best of "
                f"{len(sqlite)}: {min(postgres):.2f} s vs {min(sqlite):.2f} s"
            ),
            extra={"sqlite_s": sqlite, "postgresql_s": postgres},
        ),
    ]
