"""What the several-replica benchmarks (8-11) share: a throwaway PostgreSQL cluster, fresh databases on it,
replicas (real `python -m reelscan.service --db postgresql://...` processes), and finding which replica runs a job.

The cluster comes from the system's PostgreSQL server binaries (tests/helpers/postgres.py: initdb in a temporary
directory, TCP on 127.0.0.1, fsync off). It is started once per `python -m bench` run, on first use, and destroyed
when the run ends. Where the binaries are absent, each of these benchmarks prints why and returns one "skipped" row.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench import corpus, rpc
from bench.harness import CACHE, Row, log, reelscan_server
from reelscan.v1 import job_pb2, job_service_pb2
from tests.helpers.postgres import PostgresCluster, find_bin_dir
from tests.helpers.server import ServerProcess

# Replicas renew their lease every ttl/3; the default (10 s) is what an operator runs. Stated so the benchmark
# says what it measured.
LEASE_TTL_S = 10.0

_cluster: PostgresCluster | None = None
_numbers = itertools.count(1)


class Unavailable(Exception):
    """PostgreSQL cannot be used here; str() says why."""


def skip_reason() -> str:
    """Why the PostgreSQL benchmarks cannot run here ("" if they can)."""
    if find_bin_dir() is None:
        return "PostgreSQL server binaries (pg_ctl, initdb) not found (Debian: apt-get install postgresql)"
    return ""


def skipped(name: str, reason: str) -> list[Row]:
    log(f"  skipped: {reason}")
    return [Row(f"{name}: skipped", "", None, reference_name="n/a: no PostgreSQL", note=reason)]


def cluster() -> PostgresCluster:
    """The run's PostgreSQL cluster, started on first use."""
    global _cluster
    if _cluster is None:
        reason = skip_reason()
        if reason:
            raise Unavailable(reason)
        started = time.perf_counter()
        pg = PostgresCluster()
        try:
            pg.start()
        except Exception:
            pg.destroy()
            raise
        atexit.register(pg.destroy)
        _cluster = pg
        log(f"  PostgreSQL cluster {pg.bin} on 127.0.0.1:{pg.port} up in {time.perf_counter() - started:.1f} s")
    return _cluster


def fresh_database(name: str) -> str:
    """A new, empty database on the run's cluster; returns its URL (for --db)."""
    return cluster().create_database(f"bench_{name}_{os.getpid()}_{next(_numbers)}")


def replica_args(extra: Sequence[str] = ()) -> list[str]:
    return ["--lease-ttl", f"{LEASE_TTL_S:g}", *extra]


@contextlib.contextmanager
def replicas(
    url: str, count: int, roots: Sequence[Path], extra_args: Sequence[str] = ()
) -> Iterator[list[ServerProcess]]:
    """`count` replicas on one database, started one after the other (the first migrates the schema)."""
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(reelscan_server(url, roots, replica_args(extra_args))) for _ in range(count)]
        yield servers


async def owner_address(stubs: rpc.Stubs, job_id: str, timeout_s: float = 60.0) -> str:
    """The address of the replica running `job_id`, once it runs (Job.replica_address)."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = (await stubs.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id))).job
        if job.state == job_pb2.JOB_STATE_RUNNING and job.replica_address:
            return str(job.replica_address)
        if job.state in rpc.TERMINAL:
            raise RuntimeError(f"job {job_id} ended {rpc.state_name(job.state)} before it was seen running")
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} not running after {timeout_s:.0f} s (state {rpc.state_name(job.state)})")
        await asyncio.sleep(0.01)


def linked_roots(count: int, files: int, prefix: str = "r") -> list[Path]:
    """`count` directories of `files` hard links each to the 12 real clips of corpus.clips(12) (distinct names, so
    each root is its own scan and its files are new rows); cached under var/bench like the other corpora."""
    sources = corpus.clips(12)[1]
    base = CACHE / f"roots-{prefix}{count}x{files}"
    manifest = base / ".manifest.json"
    roots = [base / f"{prefix}{i:03}" for i in range(count)]
    if not manifest.exists():
        shutil.rmtree(base, ignore_errors=True)
        log(f"  linking {count} roots of {files} files in {base} (once; cached)")
        for root in roots:
            root.mkdir(parents=True)
            for j in range(files):
                source = Path(sources[j % len(sources)])
                os.link(source, root / f"f{j:05}{source.suffix}")
        manifest.write_text('{"kind": "linked-roots"}\n')
    return roots
