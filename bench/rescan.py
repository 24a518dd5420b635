"""2. Unchanged rescan of the big tree (StartScan -> terminal WatchJob update, timed by the client), files/s,
against `find ROOT -type f -printf '%s %T@\\n'` over the same tree (target >= 0.5x).

The server starts on a copy of the cached library snapshot (the tree already scanned), so every file is
unchanged: the scan walks, stats and compares, and probes nothing (asserted). find runs once first to warm the
dentry and inode caches for both; then each round times find and a rescan, in alternating order (2 x
`scan_repeats` rounds). Each round gives a pair ratio; the table shows the round with the median pair ratio,
the note the pair ratios' median and range. Peak server RSS during the rescan is recorded too (the known-files map).
"""

from __future__ import annotations

import asyncio

from bench import corpus, reference, rpc
from bench.harness import MB, Context, PeakRss, Row, log, median, median_pair, reelscan_server


def run(ctx: Context) -> list[Row]:
    count = ctx.sizes.tree_files
    root = corpus.tree(count)
    snapshot, manifest = corpus.library(count)
    db = corpus.copy_library(snapshot, ctx.db("rescan"))
    reference.find_walk(root)  # warm caches
    find_rates: list[float] = []
    ours: list[rpc.ScanRun] = []
    peak = 0
    with reelscan_server(db, [root], fresh=False) as server:
        assert server.proc is not None
        for i in range(2 * ctx.sizes.scan_repeats):
            if i % 2 == 0:
                find_rates.append(count / reference.find_walk(root))
            with PeakRss(server.proc.pid) as rss:
                scan = asyncio.run(rpc.scan(server.address, str(root)))
            if i % 2 == 1:
                find_rates.append(count / reference.find_walk(root))
            peak = max(peak, rss.peak)
            result = scan.last.job.result
            if result.unchanged != count or result.probed != 0:
                raise RuntimeError(
                    f"rescan was not all-unchanged (unchanged={result.unchanged}, probed={result.probed} of {count}):"
                    " the cached tree changed since var/bench was built; delete var/bench and rerun"
                )
            ours.append(scan)
            log(
                f"  rescan #{i + 1}: find {find_rates[-1]:.0f} files/s, reelscan {count / scan.seconds:.0f} files/s "
                f"({count / scan.seconds / find_rates[-1]:.2f}x)"
            )
    rates = [count / s.seconds for s in ours]
    ratios = [r / f for r, f in zip(rates, find_rates, strict=True)]
    server_rate = median([count / s.server_seconds for s in ours])
    ctx.meta["library_build"] = manifest
    return [
        Row(
            "unchanged rescan (2) vs find",
            "files/s",
            *median_pair(rates, find_rates),
            "find -printf '%s %T@'",
            target_ratio=0.5,
            note=(
                f"{count:,} unchanged files; pair ratios median {median(ratios):.2f}x, range "
                f"{min(ratios):.2f}-{max(ratios):.2f}x over {len(ratios)}; server-side start->finish "
                f"{server_rate:.0f} files/s; peak server RSS during the rescan {peak / MB:.0f} MB"
            ),
            extra={
                "files": count,
                "reelscan_runs_s": [s.seconds for s in ours],
                "find_runs_files_per_s": find_rates,
                "ratios": ratios,
                "peak_rss_bytes": peak,
            },
        )
    ]
