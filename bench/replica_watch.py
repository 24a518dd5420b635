"""8. Cross-replica watch latency: an update published by the replica running a job -> received by a watcher on
another replica (target p99 <= 100 ms).

Two replicas on one fresh PostgreSQL database. One slow scan (`replica_watch_files` files, each probe sleeping
`replica_probe_delay` s in the replicas' single probe worker, so it makes ~10 updates a second for ~30 s: a few
hundred updates) is watched from this one client process over two channels: on the replica that runs it (the
owner, found from Job.replica_address) and on the other one. The owner's hub hands each snapshot to its local
stream at once; the other replica learns of it through the store (checkpoint UPDATE + NOTIFY, its listener, a
re-read of the row). Latency of seq N = receive time on the other replica's stream - receive time on the owner's
stream, both taken on this process's clock: no clock of a process we do not control is trusted. The owner-local
stream is thus the reference (t = 0); it lags the publish itself only by one local gRPC send.

Each stream's first message (the snapshot sent on subscribing) is left out. Seqs only one stream saw are counted
(the other replica's reads coalesce: a re-read may already find a newer seq), not timed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bench import corpus, replicas, rpc
from bench.harness import CACHE, Context, Row, log, median, percentile
from reelscan.v1 import job_pb2, job_service_pb2

MS = 1000.0


@dataclass
class Stream:
    received: dict[int, float] = field(default_factory=dict)  # seq -> perf_counter() on arrival
    lag_s: list[float] = field(default_factory=list)  # arrival wall time - update_time (same host clock; info)
    first_seq: int = -1
    terminal_seq: int = -1
    terminal_state: int = 0


async def follow(stubs: rpc.Stubs, job_id: str, stream: Stream) -> None:
    async for update in stubs.jobs.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id)):
        now, wall = time.perf_counter(), time.time()
        if stream.first_seq < 0:
            stream.first_seq = update.seq
        else:
            stream.received[update.seq] = now
            stream.lag_s.append(wall - update.update_time.ToNanoseconds() / 1e9)
        if update.state in rpc.TERMINAL:
            stream.terminal_seq, stream.terminal_state = update.seq, update.state
            return


async def measure(addresses: list[str], root: str) -> tuple[Stream, Stream, str]:
    chans = [rpc.channel(a) for a in addresses]
    try:
        stubs = {a: rpc.Stubs(ch) for a, ch in zip(addresses, chans, strict=True)}
        first = stubs[addresses[0]]
        job_id = await rpc.start_scan(first, root)
        owner = await replicas.owner_address(first, job_id)
        if owner not in stubs:
            raise RuntimeError(f"job runs on {owner}, not on one of our replicas {addresses}")
        other = next(a for a in addresses if a != owner)
        local, remote = Stream(), Stream()
        await asyncio.wait_for(
            asyncio.gather(follow(stubs[owner], job_id, local), follow(stubs[other], job_id, remote)), 900
        )
        return local, remote, job_id
    finally:
        for ch in chans:
            await ch.close()


def run(ctx: Context) -> list[Row]:
    reason = replicas.skip_reason()
    if reason:
        return replicas.skipped("cross-replica watch (8)", reason)
    sizes = ctx.sizes
    root = corpus.tree(sizes.replica_watch_files)
    url = replicas.fresh_database("watch")
    args = ["--probe-workers", "1", "--probe-delay", f"{sizes.replica_probe_delay:g}"]
    with replicas.replicas(url, 2, [CACHE], args) as servers:
        local, remote, job_id = asyncio.run(measure([s.address for s in servers], str(root)))
    for name, stream in (("owner", local), ("other replica", remote)):
        if stream.terminal_state != job_pb2.JOB_STATE_SUCCEEDED:
            raise RuntimeError(f"the watch on the {name} ended {rpc.state_name(stream.terminal_state)}")
    start = max(local.first_seq, remote.first_seq)
    common = sorted(seq for seq in local.received.keys() & remote.received.keys() if seq > start)
    if not common:
        raise RuntimeError("no update was received on both replicas")
    delays = [remote.received[seq] - local.received[seq] for seq in common]
    owner_seqs = [seq for seq in local.received if seq > start]
    coverage = len(common) / len(owner_seqs)
    terminal = remote.received[remote.terminal_seq] - local.received[local.terminal_seq]
    p50, p99 = median(delays) * MS, percentile(delays, 99) * MS
    log(
        f"  {len(common)} updates seen on both: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(delays) * MS:.1f} ms; "
        f"terminal {terminal * MS:.1f} ms; {coverage:.0%} of the owner's updates reached the other replica"
    )
    ref = "owner-replica stream of the same seq (t=0)"
    note = (
        f"{sizes.replica_watch_files}-file scan, 1 probe worker per replica, --probe-delay "
        f"{sizes.replica_probe_delay:g}; {len(common)} seqs received on both streams ({len(owner_seqs)} on the "
        f"owner's, {len([s for s in remote.received if s > start])} on the other's: {coverage:.0%}); min "
        f"{min(delays) * MS:.1f} ms, max {max(delays) * MS:.1f} ms; terminal update {terminal * MS:.1f} ms; the "
        f"owner stream itself lags update_time by p50 {median(local.lag_s) * MS:.1f} ms (same-host clock)"
    )
    return [
        Row("cross-replica watch latency (8) p50", "ms", p50, reference_name=ref, higher_is_better=False),
        Row(
            "cross-replica watch latency (8) p99",
            "ms",
            p99,
            reference_name=ref,
            limit=100,
            higher_is_better=False,
            note=note,
            extra={
                "job_id": job_id,
                "samples_ms": [d * MS for d in delays],
                "owner_seqs": len(owner_seqs),
                "coverage": coverage,
                "terminal_ms": terminal * MS,
                "owner_lag_ms_p50": median(local.lag_s) * MS,
                "other_lag_ms_p50": median(remote.lag_s) * MS,
            },
        ),
    ]
