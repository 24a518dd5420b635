"""1. Cold scan: StartScan -> terminal WatchJob update, timed by the client, files/s, against the cheapest way this
machine gets the same header fields: a bare `multiprocessing` pool of 2 pre-warmed processes running a plain
`av.open` + header-field loop (bench/reference.py; target >= 0.9x).

Three corpora (bench/corpus.py): 3,000 tiny clips, the 1,000 mixed tiny ones, and 200 realistic clips (10-30 s at
720p/1080p with audio; H.264/HEVC/VP9; some with the index at the end). Each round, for each corpus:
- the reference pool over the files,
- a freshly started server (fresh database; timed from its first StartScan, so worker start-up and warm-up must
  be over by the time it reports SERVING), scanning them all: "first scan",
- a forced rescan (`force`) on that same, now warm, server: every file probed again and rewritten.
The reference runs before our scans in even rounds and after them in odd ones. Each round gives a pair ratio
(ours / the reference of that round); the table shows the round with the median pair ratio, the note the pair
ratios' median and range. Our full probe is also timed in-process against the plain one (one core, no pool): a
slowdown of the probe itself shows there, not in the reference.

Also a sequential `ffprobe` subprocess loop (target >= 30x) and `xargs -P2 ffprobe` (informational), on a sample.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench import corpus, reference, rpc
from bench.harness import CACHE, Context, Row, log, median, median_pair, reelscan_server


def warm_page_cache(files: list[str]) -> None:
    for path in files:
        Path(path).read_bytes()


def _ours(ctx: Context, root: Path, count: int) -> tuple[rpc.ScanRun, rpc.ScanRun]:
    """(first scan on a fresh server, forced rescan on it)."""
    with reelscan_server(ctx.db("cold"), [CACHE]) as server:
        first = asyncio.run(rpc.scan(server.address, str(root)))
        forced = asyncio.run(rpc.scan(server.address, str(root), force=True))
    for run, what in ((first, "new"), (forced, "updated")):
        result = run.last.job.result
        stored = result.new if what == "new" else result.updated
        if stored != count or result.failed:
            raise RuntimeError(f"cold scan stored {stored} {what}, {result.failed} failed of {count}")
    return first, forced


def _spread(ratios: list[float]) -> str:
    return f"pair ratios median {median(ratios):.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}x over {len(ratios)}"


def _corpus_rows(ctx: Context, pool: reference.PyavPool, label: str, root: Path, files: list[str]) -> list[Row]:
    warm_page_cache(files)
    refs: list[float] = []
    firsts: list[tuple[float, rpc.ScanRun]] = []
    forced: list[float] = []
    for i in range(ctx.sizes.scan_repeats):
        if i % 2 == 0:
            refs.append(len(files) / pool.seconds(files))
        first, again = _ours(ctx, root, len(files))
        if i % 2 == 1:
            refs.append(len(files) / pool.seconds(files))
        firsts.append((len(files) / first.seconds, first))
        forced.append(len(files) / again.seconds)
        log(
            f"  {label} #{i + 1}: reference {refs[-1]:.0f} files/s, first scan {firsts[-1][0]:.0f}, "
            f"forced rescan {forced[-1]:.0f} ({firsts[-1][0] / refs[-1]:.2f}x, {forced[-1] / refs[-1]:.2f}x)"
        )
    first_ratios = [f / r for (f, _), r in zip(firsts, refs, strict=True)]
    forced_ratios = [f / r for f, r in zip(forced, refs, strict=True)]
    updates = median([run.updates for _, run in firsts])
    server_rate = median([len(files) / run.server_seconds for _, run in firsts])
    name = "2-process PyAV pool (plain probe)"
    detail = {
        "files": len(files),
        "reference_files_per_s": refs,
        "first_scan_files_per_s": [r for r, _ in firsts],
        "forced_rescan_files_per_s": forced,
        "first_scan_ratios": first_ratios,
        "forced_rescan_ratios": forced_ratios,
    }
    return [
        Row(
            f"cold scan (1), {label}: first scan after start",
            "files/s",
            *median_pair([r for r, _ in firsts], refs),
            name,
            target_ratio=0.9,
            note=(
                f"{_spread(first_ratios)}; StartScan->terminal WatchJob update on the client, fresh server; "
                f"server-side start->finish {server_rate:.0f} files/s; {updates:.0f} updates streamed"
            ),
            extra=detail,
        ),
        Row(
            f"cold scan (1), {label}: forced rescan, warm server",
            "files/s",
            *median_pair(forced, refs),
            name,
            target_ratio=0.9,
            note=_spread(forced_ratios),
        ),
    ]


def run(ctx: Context) -> list[Row]:
    sizes = ctx.sizes
    _, warm = corpus.clips(12)
    big = 3 * sizes.clips  # 3,000 tiny clips at full size
    rows: list[Row] = []
    with reference.pyav_pool(warm) as pool:
        for count in (big, sizes.clips):
            root, files = corpus.clips(count)
            rows += _corpus_rows(ctx, pool, f"{count:,} tiny clips", root, files)
        root, files = corpus.real(sizes.real_clips)
        rows += _corpus_rows(ctx, pool, f"{len(files)} realistic clips", root, files)
    _, files = corpus.clips(sizes.clips)
    ours_us, plain_us = reference.probe_cost(files[:300])
    log(f"  probe cost in process: ours {ours_us:.0f} us/file, plain {plain_us:.0f} us/file")
    rows.append(
        Row(
            "probe cost in process (1): probe_pyav.probe vs plain",
            "us/file",
            ours_us,
            plain_us,
            "plain av.open + header fields",
            higher_is_better=False,
            note="one core, no pool, best of 3 alternating passes over 300 cached clips: what our probe adds per file",
        )
    )
    rows += _ffprobe_rows(sizes.ffprobe_sample, files, rows[0].reelscan)
    return rows


def _ffprobe_rows(sample_size: int, files: list[str], ours: float | None) -> list[Row]:
    if reference.ffprobe_path() is None:
        log("  ffprobe not on PATH: ffprobe references are n/a")
        return [
            Row("cold scan (1) vs sequential ffprobe", "files/s", ours, None, "n/a: no ffprobe", 30.0),
            Row("cold scan (1) vs xargs -P2 ffprobe", "files/s", ours, None, "n/a: no ffprobe"),
        ]
    # ffprobe costs ~tens of ms per file (process start-up): time a sample spread over the three containers.
    sample = files[:: max(1, len(files) // sample_size)][:sample_size]
    sequential = xargs = 0.0
    for _ in range(2):
        sequential = max(sequential, len(sample) / reference.ffprobe_sequential(sample))
        xargs = max(xargs, len(sample) / reference.ffprobe_xargs(sample, parallel=2))
    log(f"  ffprobe over {len(sample)} files: sequential {sequential:.1f} files/s, xargs -P2 {xargs:.1f} files/s")
    return [
        Row(
            "cold scan (1) vs sequential ffprobe",
            "files/s",
            ours,
            sequential,
            "ffprobe loop",
            target_ratio=30.0,
            note=f"ffprobe rates: best of 2 runs over a {len(sample)}-file sample of the clips",
        ),
        Row("cold scan (1) vs xargs -P2 ffprobe", "files/s", ours, xargs, "xargs -P2 ffprobe"),
    ]
