"""References: what the machine does for the same work without reelscan, measured in the same run.

- A bare in-process PyAV probe loop with 2 threads (FFmpeg's demuxers release the GIL while they read and parse).
- A sequential `ffprobe` subprocess loop and `xargs -P2 ffprobe` (where ffprobe is on PATH).
- `find ROOT -type f -printf '%s %T@\\n'` for a metadata-only walk.
- A bare grpc.aio echo server (bench/echo_server.py), for unary RPC throughput.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import av.logging

from bench.harness import timed

FFPROBE_ARGS = ("-v", "error", "-print_format", "json", "-show_format", "-show_streams")


def pyav_probe(path: str) -> dict[str, Any]:
    """Reads what reelscan stores per file, and nothing more, in the plainest way PyAV allows.

    Rotation: PyAV (18) exposes no stream side data, so, like reelscan, it is read from FFmpeg's own format dump
    (which prints the display matrix) when the stream has no legacy `rotate` tag.
    """
    st = os.stat(path)
    with av.open(path, metadata_errors="replace") as container:
        info: dict[str, Any] = {
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "format": container.format.name,
            "duration": container.duration,
            "bit_rate": container.bit_rate,
            "creation_time": container.metadata.get("creation_time"),
        }
        streams = container.streams
        for stream in streams.video[:1]:
            cc = stream.codec_context
            rotation: Any = stream.metadata.get("rotate")
            if rotation is None:
                previous = av.logging.get_level()
                av.logging.set_level(av.logging.INFO)
                try:
                    rotation = "display matrix" in container.dumps_format().lower()
                finally:
                    av.logging.set_level(previous)
            info["video"] = (
                stream.codec.canonical_name,
                stream.profile,
                cc.width,
                cc.height,
                stream.average_rate,
                stream.base_rate,
                cc.pix_fmt,
                cc.color_trc,
                cc.color_primaries,
                rotation,
            )
        info["audio"] = [
            (s.codec.canonical_name, s.codec_context.channels, s.codec_context.sample_rate, s.language)
            for s in streams.audio
        ]
        info["subtitles"] = [s.language for s in streams.subtitles]
        return info


def pyav_loop(files: Sequence[str], threads: int = 2) -> float:
    """Seconds to probe `files` with `threads` threads in this process."""

    def run() -> None:
        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(pyav_probe, files, chunksize=16):
                pass

    return timed(run)


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
