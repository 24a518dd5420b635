"""Runs the reelscan benchmarks and prints one table; results go to bench/results/latest.json.

Usage: python -m bench [--quick] [--only NAME[,NAME...]] [--set SIZE=N ...] [--profile DIR] [--json PATH]
Names: cold_scan, rescan, watch_fanout, unary_qps, latency, cancel, memory, metrics_overhead, slow_storage (FUSE;
skipped, saying why, where it cannot mount), and on PostgreSQL (several replicas; skipped, saying why, where the
server binaries are absent) replica_watch, replica_cancel, replica_scaling, replica_qps, replica_shards (see
bench/README.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

from bench import harness
from bench.harness import RESULTS, Context, Row, Sizes, log

BENCHMARKS = (
    "cold_scan",
    "rescan",
    "watch_fanout",
    "unary_qps",
    "latency",
    "cancel",
    "memory",
    "metrics_overhead",
    "slow_storage",
    "replica_watch",
    "replica_cancel",
    "replica_scaling",
    "replica_qps",
    "replica_shards",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for iterating (not for the README)")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--json", type=Path, default=None, help="where to write results (default: bench/results/)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SIZE=N",
        help="override one size (see harness.Sizes), e.g. --set watchers=500; repeatable",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="sample every server under test with py-spy into DIR (numbers are then perturbed: not for the table)",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    sizes = Sizes.quick() if args.quick else Sizes.full()
    for item in args.set:
        key, _, value = item.partition("=")
        current = getattr(sizes, key, None)
        if current is None or not value:
            parser.error(f"--set {item}: expected SIZE=N with SIZE one of {', '.join(sizes.__dict__)}")
        sizes = dataclasses.replace(sizes, **{key: type(current)(value)})
    harness.PROFILE_DIR = args.profile
    ctx = Context(sizes)
    meta = {"environment": harness.environment(), "sizes": sizes.__dict__, "mode": "quick" if args.quick else "full"}
    rows: list[Row] = []
    failures: dict[str, str] = {}
    started = time.perf_counter()
    for name in names:
        log(f"[{name}]")
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            rows += module.run(ctx)
        except Exception as error:  # one broken benchmark must not hide the others' numbers
            traceback.print_exc()
            failures[name] = f"{type(error).__name__}: {error}"
            rows.append(Row(f"{name}: FAILED", "", None, note=failures[name][:300]))
        log(f"  ({time.perf_counter() - t0:.0f} s)")
    meta.update(ctx.meta, seconds=time.perf_counter() - started, failures=failures)
    meta["load_avg_end"] = os.getloadavg()  # the start's is in environment: a busy neighbour shows here
    if args.json is not None:
        out = args.json
    elif args.quick or args.only or args.profile or args.set:
        out = harness.CACHE / "partial.json"  # quick or partial runs never overwrite the committed results
    else:
        out = RESULTS / "latest.json"
    harness.write_json(out, rows, meta)
    table = harness.render_table(rows)
    out.with_suffix(".txt").write_text(table + "\n")
    print(table)
    print(f"\n{len(rows)} rows in {meta['seconds']:.0f} s; JSON: {out}")
    missed = [r.benchmark for r in rows if r.met is False]
    if missed:
        print(f"below target: {', '.join(missed)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
