"""13. Slow storage: a cold scan of files behind a 2 ms delay per read (a FUSE passthrough, bench/slowfs.py), with
default settings against the same server with `--probe-concurrency 1` (one file at a time per worker, which is
what the pool did before threads): target >= 4x.

On a network mount a probe mostly waits for reads; a worker running several probes in threads overlaps the waits
(PyAV releases the GIL while FFmpeg reads), so the rate is bound by the storage's latency times the files in
flight, not by the number of cores. Rounds alternate the two servers (fresh database each, StartScan -> terminal
WatchJob update); the pair ratios' median and range are reported.

Needs /dev/fuse, `fusermount3` (Debian's fuse3) and mfusepy (`pip install mfusepy`); skipped, saying which is
missing, where they are not.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench import corpus, rpc
from bench.harness import CACHE, REPO, Context, Row, log, median, median_pair, reelscan_server

DELAY_MS = 2.0


def _missing() -> str:
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if shutil.which("fusermount3") is None:
        return "no fusermount3 (apt-get install fuse3)"
    if importlib.util.find_spec("mfusepy") is None:
        return "no mfusepy (pip install mfusepy)"
    return ""


class SlowMount:
    """`source` mounted read-only at `mountpoint` behind bench/slowfs.py, for the duration of a `with`."""

    def __init__(self, source: Path, mountpoint: Path, delay_ms: float) -> None:
        self.source, self.mountpoint, self.delay_ms = source, mountpoint, delay_ms
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SlowMount:
        subprocess.run(["fusermount3", "-u", "-q", str(self.mountpoint)], check=False)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "bench.slowfs", str(self.source), str(self.mountpoint)]
        self.proc = subprocess.Popen([*cmd, "--delay-ms", str(self.delay_ms)], cwd=REPO, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.ismount(self.mountpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the slow FUSE mount at {self.mountpoint} did not come up")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["fusermount3", "-u", str(self.mountpoint)], check=False)
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _scan(ctx: Context, root: Path, count: int, extra: list[str]) -> float:
    with reelscan_server(ctx.db("slow"), [root], extra_args=extra) as server:
        run = asyncio.run(rpc.scan(server.address, str(root)))
    result = run.last.job.result
    if result.new != count or result.failed:
        raise RuntimeError(f"slow-storage scan stored {result.new} new, {result.failed} failed of {count}")
    return count / run.seconds


def run(ctx: Context) -> list[Row]:
    name = f"slow storage (13): {DELAY_MS:g} ms per read, defaults vs --probe-concurrency 1"
    missing = _missing()
    if missing:
        log(f"  skipped: {missing}")
        return [Row(name, "files/s", None, None, f"n/a: {missing}", 4.0)]
    source, files = corpus.real(ctx.sizes.real_clips)
    mountpoint = CACHE / "run" / "slow-mount"
    defaults: list[float] = []
    single: list[float] = []
    with SlowMount(source, mountpoint, DELAY_MS):
        for i in range(ctx.sizes.scan_repeats):
            order = (False, True) if i % 2 == 0 else (True, False)
            for one in order:
                rate = _scan(ctx, mountpoint, len(files), ["--probe-concurrency", "1"] if one else [])
                (single if one else defaults).append(rate)
            log(f"  slow storage #{i + 1}: defaults {defaults[-1]:.0f} files/s, concurrency 1 {single[-1]:.0f} files/s")
    ratios = [d / s for d, s in zip(defaults, single, strict=True)]
    return [
        Row(
            name,
            "files/s",
            *median_pair(defaults, single),
            "same server, --probe-concurrency 1",
            target_ratio=4.0,
            note=(
                f"{len(files)} realistic clips (bench/corpus.py real-N) through a FUSE passthrough with direct_io; "
                f"pair ratios median {median(ratios):.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}x"
            ),
            extra={"defaults_files_per_s": defaults, "concurrency_1_files_per_s": single, "ratios": ratios},
        )
    ]
