"""Scan benchmarks (issue 4), printed as ratios against their limits. Not a test: machines are noisy.

Each contender runs REPEAT times and its best run counts (other load on the machine only ever slows a run down).

1. Cold scan of N small generated clips end to end through gRPC (StartScan, then WatchJob to the end), against
   a bare in-process PyAV probe loop over the same files with 2 threads (limit: >= 0.6x), and against a
   sequential `ffprobe` subprocess loop where ffprobe exists (limit: >= 30x).
2. Rescan of M unchanged files end to end, against `find ROOT -type f -printf '%s %T@\\n'` over the same tree
   (limit: >= 0.25x). The library is seeded directly with the files' (size, mtime) so that the cold probe of M
   files is not part of the set-up.

Usage: python -m bench.scan_bench [--clips 1000] [--rescan-files 100000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import grpc

from reelscan.service.scan import probe_pyav
from reelscan.service.scan.library_store import LibraryStore, ProbedFile
from reelscan.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc, scan_service_pb2, scan_service_pb2_grpc
from tests.helpers.server import ServerProcess
from tests.media import copy_clip, make_clip

TERMINAL = (
    job_pb2.JOB_STATE_SUCCEEDED,
    job_pb2.JOB_STATE_FAILED,
    job_pb2.JOB_STATE_CANCELLED,
    job_pb2.JOB_STATE_TIMED_OUT,
)


def make_clips(root: Path, count: int) -> list[str]:
    """`count` small clips: a dozen distinct encodings (H.264/AAC MP4, VP9/Opus WebM, MKV), copied around."""
    sources_dir = root.parent / "sources"
    sources = []
    for i in range(4):
        sources.append(make_clip(sources_dir / f"h264_{i}.mp4", fps=24 + i, audio_language="eng").path)
        sources.append(make_clip(sources_dir / f"vp9_{i}.webm", video_codec="vp9", audio_codec="opus").path)
        sources.append(make_clip(sources_dir / f"h264_{i}.mkv", audio_codec=None, rotation=90 * (i % 4)).path)
    files = []
    for i in range(count):
        source = sources[i % len(sources)]
        files.append(str(copy_clip(source, root / f"d{i // 100:03}" / f"clip{i:05}{source.suffix}")))
    return files


def bare_probe(path: str) -> object:
    """What a bare PyAV loop does per file: open, read container and stream parameters, close."""
    with av.open(path) as container:
        streams = [
            (s.type, s.codec_context.name if s.codec_context else None, getattr(s.codec_context, "width", None))
            for s in container.streams
        ]
        return container.format.name, container.duration, container.bit_rate, streams


REPEAT = 3  # each contender runs this many times and its best run counts: other load only ever slows a run down


def report(label: str, count: int, times: list[float]) -> float:
    best = min(times)
    rate = count / best
    spread = f"(runs: {', '.join(f'{t:.3f}' for t in times)})" if len(times) > 1 else ""
    print(f"  {label:<58} {best:8.3f} s  {rate:10.0f} files/s  {spread}")
    return rate


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def rate_of(label: str, count: int, run: Callable[[], object], repeat: int = REPEAT) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return report(label, count, times)


def threaded(fn: Callable[[str], object], files: list[str], threads: int = 2) -> Callable[[], object]:
    def run() -> object:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(fn, files))

    return run


async def scan_through_grpc(address: str, root: Path) -> tuple[float, job_pb2.Job]:
    async with grpc.aio.insecure_channel(address) as channel:
        scans = scan_service_pb2_grpc.ScanServiceStub(channel)
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        start = time.perf_counter()
        response = await scans.StartScan(scan_service_pb2.StartScanRequest(path=str(root)))
        last = None
        async for update in jobs.WatchJob(job_service_pb2.WatchJobRequest(job_id=response.job.id)):
            last = update
        elapsed = time.perf_counter() - start
        assert last is not None and last.state in TERMINAL
        return elapsed, last.job


def grpc_rate(label: str, address: str, roots: list[Path], count: int) -> tuple[float, job_pb2.Job]:
    """Scans each root in turn (one run each) and reports the best run."""
    times = []
    job = None
    for root in roots:
        elapsed, job = asyncio.run(scan_through_grpc(address, root))
        times.append(elapsed)
    assert job is not None
    return report(label, count, times), job


def verdict(name: str, ratio: float, limit: float) -> bool:
    ok = ratio >= limit
    print(f"  => {name}: {ratio:.2f}x (limit >= {limit}x) {'OK' if ok else 'BELOW LIMIT'}")
    return ok


def cold_scan(work: Path, clips: int, workers: int | None) -> bool:
    print(f"\n[1] cold scan of {clips} small clips (best of {REPEAT} runs each)")
    root = work / "clips"
    files = make_clips(root, clips)
    # Every end-to-end run needs files the library has never seen: a copy of the tree per run.
    copies = [root] + [work / f"clips-{i}" for i in range(1, REPEAT)]
    for copy in copies[1:]:
        shutil.copytree(root, copy)
    os.sync()
    threaded(bare_probe, files[:50])()  # warm the page cache and the libraries
    extra = ["--probe-workers", str(workers)] if workers else []
    times: dict[str, list[float]] = {"bare": [], "probe": [], "e2e": []}
    with ServerProcess(work / "cold.db", allow_roots=[work], extra_args=extra) as server:
        asyncio.run(scan_through_grpc(server.address, _subset(root, work / "warmup", 10)))
        time.sleep(1.0)  # the probe workers finish starting (they import FFmpeg) before anything is timed
        # Interleaved rounds, so that load coming and going on the machine hits every contender alike.
        job = None
        for copy in copies:
            times["bare"].append(timed(threaded(bare_probe, files)))
            times["probe"].append(timed(threaded(probe_pyav.probe, files)))
            elapsed, job = asyncio.run(scan_through_grpc(server.address, copy))
            times["e2e"].append(elapsed)
    bare = report("bare in-process PyAV loop (open + stream params), 2 threads", len(files), times["bare"])
    probe_fn = report("reelscan's probe function in-process, 2 threads", len(files), times["probe"])
    e2e = report("reelscan end to end: StartScan + WatchJob to the end", len(files), times["e2e"])
    assert job is not None
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED and job.result.new == len(files), job
    ok = verdict("end to end vs bare PyAV loop", e2e / bare, 0.6)
    print(f"     (end to end vs reelscan's own probe function in-process: {e2e / probe_fn:.2f}x)")
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        print("  ffprobe not on PATH: skipping the ffprobe comparison")
        return ok
    sample = files[: min(len(files), 100)]

    def ffprobe_loop() -> None:
        for path in sample:
            subprocess.run(
                [ffprobe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", path],
                check=False,
                capture_output=True,
            )

    seq = rate_of(f"sequential ffprobe subprocess loop ({len(sample)} files)", len(sample), ffprobe_loop, repeat=1)
    return verdict("end to end vs sequential ffprobe", e2e / seq, 30.0) and ok


def _subset(source_root: Path, dest: Path, count: int) -> Path:
    for i, path in enumerate(sorted(source_root.rglob("*.mp4"))[:count]):
        copy_clip(path, dest / f"w{i}.mp4")
    return dest


def make_tree(root: Path, count: int, per_dir: int = 1000) -> None:
    for d in range(0, count, per_dir):
        directory = root / f"d{d // per_dir:04}"
        directory.mkdir(parents=True)
        for i in range(d, min(count, d + per_dir)):
            with open(directory / f"f{i:06}.mp4", "wb") as f:
                f.write(b"\0" * (i % 7))


async def seed_library(db: Path, root: Path) -> int:
    """Stores every file under `root` as already probed (failed probe rows: cheapest, and equally 'unchanged')."""
    store = await LibraryStore.open(db)
    try:
        rows = []
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = os.path.join(dirpath, name)
                st = os.stat(path)
                rows.append(ProbedFile(path, st.st_size, st.st_mtime_ns, None, "seeded"))
        for i in range(0, len(rows), 5000):
            await store.write_batch(rows[i : i + 5000])
        return len(rows)
    finally:
        await store.close()


def rescan(work: Path, count: int) -> bool:
    print(f"\n[2] rescan of {count} unchanged files (best of {REPEAT} runs each)")
    root = work / "tree"
    make_tree(root, count)
    seeded = asyncio.run(seed_library(work / "rescan.db", root))
    assert seeded == count
    os.sync()

    def find() -> None:
        subprocess.run(["find", str(root), "-type", "f", "-printf", "%s %T@\\n"], check=True, stdout=subprocess.DEVNULL)

    find()  # warm the dentry and inode caches for both contenders
    warmup = work / "rescan-warmup"
    make_clip(warmup / "w.mp4")
    times: dict[str, list[float]] = {"find": [], "e2e": []}
    with ServerProcess(work / "rescan.db", allow_roots=[work]) as server:
        asyncio.run(scan_through_grpc(server.address, warmup))
        time.sleep(1.0)  # the probe workers finish starting (they import FFmpeg) before anything is timed
        job = None
        for _ in range(REPEAT):  # interleaved rounds, as for the cold scan
            times["find"].append(timed(find))
            elapsed, job = asyncio.run(scan_through_grpc(server.address, root))
            times["e2e"].append(elapsed)
    baseline = report("find ROOT -type f -printf '%s %T@\\n'", count, times["find"])
    e2e = report("reelscan rescan end to end: StartScan + WatchJob", count, times["e2e"])
    assert job is not None
    assert job.result.unchanged == count and job.result.probed == 0, job.result
    return verdict("rescan vs find", e2e / baseline, 0.25)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--rescan-files", type=int, default=100_000)
    parser.add_argument("--probe-workers", type=int, default=None, help="server --probe-workers (default: cores)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to make files (default: a temp dir)")
    parser.add_argument("--skip-rescan", action="store_true")
    parser.add_argument("--skip-cold", action="store_true")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="reelscan-bench-", dir=args.workdir))
    print(f"reelscan scan benchmark: {os.cpu_count()} cores, PyAV {av.__version__}, FFmpeg {av.ffmpeg_version_info}")
    print(f"work dir {work}")
    ok = True
    try:
        if not args.skip_cold:
            ok = cold_scan(work, args.clips, args.probe_workers) and ok
        if not args.skip_rescan:
            ok = rescan(work, args.rescan_files) and ok
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
