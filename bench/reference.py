"""References: what the machine does for the same work without reelscan, measured in the same run.

- The cheapest way to get a file's header fields with PyAV on this machine: a bare `multiprocessing` pool of 2
  processes (one per core, pre-warmed: imports done and codecs loaded before timing), each running a plain loop of
  `av.open` + the format and stream header fields reelscan stores, with no format dump, fed in chunks.
- A sequential `ffprobe` subprocess loop and `xargs -P2 ffprobe` (where ffprobe is on PATH).
- `find ROOT -type f -printf '%s %T@\\n'` for a metadata-only walk.
- A bare grpc.aio echo server (bench/echo_server.py), for unary RPC throughput.

Our own probe (service/scan/probe_pyav.py) is never the reference: `probe_cost` times it in-process against the
plain probe, on one core, so a slowdown in it shows as its own line instead of hiding in the reference.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av

from bench.harness import timed

FFPROBE_ARGS = ("-v", "error", "-print_format", "json", "-show_format", "-show_streams")
PROCESSES = 2
CHUNKSIZE = 32  # files per task message: the pool's own per-file overhead is then negligible


def plain_probe(path: str) -> tuple[Any, ...]:
    """The header fields reelscan stores, read the plainest way PyAV allows (no format dump, no validation)."""
    st = os.stat(path)
    with av.open(path, metadata_errors="replace") as container:
        streams = container.streams
        video: Any = None
        for stream in streams.video[:1]:
            cc = stream.codec_context
            video = (
                stream.codec.canonical_name,
                stream.profile,
                cc.width,
                cc.height,
                stream.average_rate,
                stream.base_rate,
                cc.pix_fmt,
                cc.color_trc,
                cc.color_primaries,
                stream.metadata.get("rotate"),
            )
        return (
            st.st_size,
            st.st_mtime_ns,
            container.format.name,
            container.duration,
            container.bit_rate,
            container.metadata.get("creation_time"),
            video,
            [
                (s.codec.canonical_name, s.codec_context.channels, s.codec_context.sample_rate, s.language)
                for s in streams.audio
            ],
            [s.language for s in streams.subtitles],
        )


def _plain_chunk(paths: Sequence[str]) -> int:
    for path in paths:
        plain_probe(path)
    return len(paths)


class PyavPool:
    """The reference's 2 processes, started and warmed once, reused by every round."""

    def __init__(self, warm_files: Sequence[str], processes: int = PROCESSES) -> None:
        # fork: the cheapest start, and the parent has av imported already (nothing else runs in it meanwhile).
        self._pool = multiprocessing.get_context("fork").Pool(processes)
        self._processes = processes
        self.seconds(list(warm_files) * processes)  # every process opens each kind of container once

    def seconds(self, files: Sequence[str]) -> float:
        """Seconds to probe `files` in the pool (chunks of CHUNKSIZE, results discarded)."""
        chunks = [files[i : i + CHUNKSIZE] for i in range(0, len(files), CHUNKSIZE)]
        start = time.perf_counter()
        done = sum(self._pool.imap_unordered(_plain_chunk, chunks))
        elapsed = time.perf_counter() - start
        assert done == len(files)
        return elapsed

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()


@contextmanager
def pyav_pool(warm_files: Sequence[str]) -> Iterator[PyavPool]:
    pool = PyavPool(warm_files)
    try:
        yield pool
    finally:
        pool.close()


def probe_cost(files: Sequence[str], rounds: int = 3) -> tuple[float, float]:
    """(our full probe, the plain one): microseconds per file in this process, one core, best of `rounds`
    alternating passes over `files` (cached pages)."""
    from reelscan.service.scan import probe_pyav

    ours = plain = float("inf")
    for _ in range(rounds):
        plain = min(plain, timed(lambda: [plain_probe(f) for f in files]))
        ours = min(ours, timed(lambda: [probe_pyav.probe(f) for f in files]))
    return ours / len(files) * 1e6, plain / len(files) * 1e6


def ffprobe_path() -> str | None:
    return shutil.which("ffprobe")


def ffprobe_sequential(files: Sequence[str]) -> float:
    ffprobe = ffprobe_path()
    assert ffprobe is not None

    def run() -> None:
        for path in files:
            subprocess.run([ffprobe, *FFPROBE_ARGS, path], check=True, stdout=subprocess.DEVNULL)

    return timed(run)


def ffprobe_xargs(files: Sequence[str], parallel: int = 2) -> float:
    ffprobe = ffprobe_path()
    assert ffprobe is not None
    listing = b"".join(os.fsencode(f) + b"\0" for f in files)

    def run() -> None:
        subprocess.run(
            ["xargs", "-0", f"-P{parallel}", "-n1", ffprobe, *FFPROBE_ARGS],
            input=listing,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    return timed(run)


def find_walk(root: Path) -> float:
    """Seconds for find to list every file under `root` with size and mtime (output discarded, as a pipe would)."""
    return timed(
        lambda: subprocess.run(
            ["find", str(root), "-type", "f", "-printf", "%s %T@\\n"], check=True, stdout=subprocess.DEVNULL
        )
    )


@contextmanager
def echo_server(response_file: Path | None = None) -> Iterator[tuple[str, int]]:
    """The bare grpc.aio echo server in its own process, like reelscan's; yields (address, pid)."""
    extra = ["--response", str(response_file)] if response_file is not None else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.echo_server", *extra],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("listening "):
            raise RuntimeError(f"echo server did not start: {line!r}")
        yield line.split()[1], proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
