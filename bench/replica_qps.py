"""11. GetJob QPS on PostgreSQL vs SQLite (reported, no target), with bench/unary_qps.py's load generator.

A server on SQLite and two replicas on one fresh PostgreSQL database, each holding
- a finished job (a scan of 12 clips): served from the engine's cache of finished jobs on any replica;
- a live job: a scan whose only file hangs its probe (--fault-injection, probe timeout far above the run), so it
  stays RUNNING, unchanged, for the whole measurement. The replica running it serves it from memory; the other
  replica has only the store (one PostgreSQL read per call).
Calls: `qps_concurrency` in flight over 2 channels for `qps_seconds`, after a warm-up; rounds alternate over every
(server, job) pair plus the bare grpc.aio echo server (bench/echo_server.py, answering with the finished job's
response bytes: the machine's cost of the same RPC with no work); the best round of each counts.
"""

from __future__ import annotations

import asyncio
import contextlib

from bench import corpus, reference, replicas, rpc
from bench.harness import CACHE, Context, Row, log, reelscan_server
from bench.unary_qps import CHANNELS, Load, measure
from bench.watch_fanout import wait_stage
from reelscan.v1 import job_pb2, job_service_pb2

SERVER_ARGS = ["--fault-injection", "--probe-timeout", "600"]


async def prepare(address: str) -> tuple[str, str, bytes]:
    """A finished job, then a live (hung) one, started through `address`; returns their ids and the finished
    job's GetJobResponse bytes."""
    root, _ = corpus.clips(12)
    finished = await rpc.scan(address, str(root))
    async with rpc.channel(address) as ch:
        stubs = rpc.Stubs(ch)
        live = await rpc.start_scan(stubs, str(corpus.hang_dir(0)), force=True)
        await asyncio.wait_for(wait_stage(stubs, live, job_pb2.JOB_STAGE_PROBING), 60)
        response = await stubs.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=finished.job_id))
    return finished.job_id, live, response.SerializeToString()


async def owner_of(address: str, job_id: str) -> str:
    async with rpc.channel(address) as ch:
        return await replicas.owner_address(rpc.Stubs(ch), job_id)


def run(ctx: Context) -> list[Row]:
    reason = replicas.skip_reason()
    if reason:
        return replicas.skipped("GetJob QPS PostgreSQL vs SQLite (11)", reason)
    sizes = ctx.sizes
    url = replicas.fresh_database("qps")
    loads: dict[str, list[Load]] = {}
    with contextlib.ExitStack() as stack:
        lite = stack.enter_context(reelscan_server(ctx.db("qps-sqlite"), [CACHE], SERVER_ARGS))
        pg = stack.enter_context(replicas.replicas(url, 2, [CACHE], SERVER_ARGS))
        lite_done, lite_live, payload = asyncio.run(prepare(lite.address))
        pg_done, pg_live, _ = asyncio.run(prepare(pg[0].address))
        owner_address = asyncio.run(owner_of(pg[0].address, pg_live))
        owner = next(s for s in pg if s.address == owner_address)
        other = next(s for s in pg if s is not owner)
        response_file = ctx.work / "getjob-response-qps-pg.bin"
        response_file.write_bytes(payload)
        echo_address, echo_pid = stack.enter_context(reference.echo_server(response_file))
        assert lite.proc is not None and owner.proc is not None and other.proc is not None
        # name -> (address, server pid, job id)
        targets: dict[str, tuple[str, int, str]] = {
            "echo": (echo_address, echo_pid, lite_done),
            "sqlite finished": (lite.address, lite.proc.pid, lite_done),
            "pg finished": (owner.address, owner.proc.pid, pg_done),
            "sqlite live": (lite.address, lite.proc.pid, lite_live),
            "pg live, owner": (owner.address, owner.proc.pid, pg_live),
            "pg live, other replica": (other.address, other.proc.pid, pg_live),
        }
        for i in range(sizes.qps_rounds):
            for name, (address, pid, job_id) in targets.items():
                loads.setdefault(name, []).append(
                    measure(address, pid, job_id, sizes.qps_seconds, sizes.qps_concurrency)
                )
            log(f"  GetJob #{i + 1}: " + ", ".join(f"{n} {v[-1].qps:.0f}" for n, v in loads.items()))
    best = {name: max(v, key=lambda load: load.qps) for name, v in loads.items()}

    def cpu(name: str) -> str:
        load = best[name]
        return f"{1e6 * load.server_cpu / load.qps:.0f} us"

    common = f"{sizes.qps_concurrency} calls in flight over {CHANNELS} channels, best of {sizes.qps_rounds} rounds"
    extra = {name: [load.__dict__ for load in v] for name, v in loads.items()}
    return [
        Row(
            "GetJob QPS (11), finished job: PostgreSQL vs SQLite",
            "QPS",
            best["pg finished"].qps,
            best["sqlite finished"].qps,
            "same call on a SQLite server",
            note=f"{common}; server CPU per call {cpu('pg finished')} vs {cpu('sqlite finished')}",
            extra=extra,
        ),
        Row(
            "GetJob QPS (11), finished job: PostgreSQL vs grpc.aio echo",
            "QPS",
            best["pg finished"].qps,
            best["echo"].qps,
            "bare grpc.aio echo server",
            note=f"echo server CPU per call {cpu('echo')}",
        ),
        Row(
            "GetJob QPS (11), live job on its replica: PostgreSQL vs SQLite",
            "QPS",
            best["pg live, owner"].qps,
            best["sqlite live"].qps,
            "same call on a SQLite server",
            note=f"server CPU per call {cpu('pg live, owner')} vs {cpu('sqlite live')}",
        ),
        Row(
            "GetJob QPS (11), live job from the other replica vs its own",
            "QPS",
            best["pg live, other replica"].qps,
            best["pg live, owner"].qps,
            "the replica running it",
            note=(
                f"the other replica serves the row it last read until a change signal: server CPU per call "
                f"{cpu('pg live, other replica')}"
            ),
        ),
    ]
