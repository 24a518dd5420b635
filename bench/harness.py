"""What every benchmark shares: sizes, result rows, the table and JSON, a server under test, timing and RSS helpers.

Every number that has a target is a ratio against a reference measured in the same run on the same files, because
the machine is noisy (other jobs, CI neighbours): absolute numbers are printed but not trusted.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.helpers.server import ServerProcess

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "var" / "bench"  # generated corpora, kept between runs (var/ is git-ignored)
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark is. `full` is what `make bench` runs; `quick` is for iterating on a busy machine."""

    clips: int  # cold-scan corpus (mixed MP4/WebM/MKV)
    tree_files: int  # rescan + memory corpus: hard links to a handful of real clips
    watchers: int  # concurrent WatchJob streams
    fanout_files: int  # the scan they watch (a tree of hard-linked clips, probed cold)
    watch_channels: int  # spread over this many channels
    qps_seconds: float  # per server, per round
    qps_rounds: int  # alternating rounds per server; the best round of each counts
    qps_concurrency: int  # calls in flight
    latency_idle_calls: int
    cancel_tries: int
    hung_cancel_tries: int
    ffprobe_sample: int  # the sequential ffprobe loop is slow: time a sample, report files/s
    scan_repeats: int  # best-of for the cold scan and rescan pairs (each run is a few seconds)
    repeats: int  # best-of for the fan-out pairs (each run is longer)
    # Several replicas on PostgreSQL (benchmarks 8-11)
    replica_watch_files: int  # the slow scan watched on two replicas (one file per update)
    replica_probe_delay: float  # seconds each of its probes sleeps (--probe-delay), so it makes ~10 updates/s
    scaling_roots: int  # scans submitted at once
    scaling_root_files: int  # files per root (hard links to real clips)
    backend_scan_files: int  # SQLite vs PostgreSQL single-replica cold scan
    # Sharded scans over replicas (benchmark 14)
    shard_delay_files: int  # the probe-delay bound scan (hard links to real clips)
    shard_probe_delay: float  # seconds each of its probes sleeps (--probe-delay): probing, not cores, is the limit
    shard_size: int  # --shard-size for it
    shard_real_files: int  # the real-probing scan (2 replicas x 1 worker vs 1 x 2)
    real_clips: int = 200  # realistic corpus (10-30 s at 720p/1080p with audio; bench/corpus.py real-N)

    @staticmethod
    def full() -> Sizes:
        return Sizes(
            clips=1000,
            tree_files=100_000,
            watchers=1000,
            fanout_files=5_000,
            watch_channels=10,
            qps_seconds=2.0,
            qps_rounds=5,
            qps_concurrency=32,
            latency_idle_calls=1000,
            cancel_tries=20,
            hung_cancel_tries=5,
            ffprobe_sample=100,
            scan_repeats=3,
            repeats=2,
            replica_watch_files=300,
            replica_probe_delay=0.1,
            scaling_roots=20,
            scaling_root_files=150,
            backend_scan_files=3000,
            shard_delay_files=6000,
            shard_probe_delay=0.005,
            shard_size=500,
            shard_real_files=3000,
        )

    @staticmethod
    def quick() -> Sizes:
        return Sizes(
            clips=200,
            tree_files=10_000,
            watchers=100,
            fanout_files=2_000,
            watch_channels=4,
            qps_seconds=1.0,
            qps_rounds=2,
            qps_concurrency=16,
            latency_idle_calls=300,
            cancel_tries=5,
            hung_cancel_tries=2,
            ffprobe_sample=40,
            scan_repeats=1,
            repeats=1,
            replica_watch_files=100,
            replica_probe_delay=0.05,
            scaling_roots=8,
            scaling_root_files=60,
            backend_scan_files=1000,
            shard_delay_files=1200,
            shard_probe_delay=0.005,
            shard_size=100,
            shard_real_files=600,
            real_clips=60,
        )


@dataclass
class Row:
    """One line of the table. `higher_is_better` decides how `ratio` is compared with `target`.

    ratio = reelscan / reference. For "higher is better" metrics (rates) the target is a minimum ratio; for "lower
    is better" ones (latency, memory) a maximum. A row with `limit` and no reference compares reelscan itself with
    an absolute limit (e.g. RSS <= 200 MB); a row with neither is informational.
    """

    benchmark: str
    unit: str
    reelscan: float | None
    reference: float | None = None
    reference_name: str = ""
    target_ratio: float | None = None
    limit: float | None = None
    higher_is_better: bool = True
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.reelscan is None or not self.reference:
            return None
        return self.reelscan / self.reference

    @property
    def target(self) -> str:
        sign = ">=" if self.higher_is_better else "<="
        if self.target_ratio is not None:
            return f"{sign} {self.target_ratio:g}x"
        if self.limit is not None:
            return f"{sign} {fmt(self.limit)} {self.unit}"
        return ""

    @property
    def met(self) -> bool | None:
        if self.reelscan is None:
            return None
        if self.target_ratio is not None:
            ratio = self.ratio
            if ratio is None:
                return None
            return ratio >= self.target_ratio if self.higher_is_better else ratio <= self.target_ratio
        if self.limit is not None:
            return self.reelscan >= self.limit if self.higher_is_better else self.reelscan <= self.limit
        return None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(ratio=self.ratio, target=self.target, met=self.met)
        return data


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def render_table(rows: Sequence[Row]) -> str:
    header = ("benchmark", "reelscan", "reference", "ratio", "target", "met?")
    lines = []
    for row in rows:
        ours = f"{fmt(row.reelscan)} {row.unit}" if row.reelscan is not None else "n/a"
        ref = f"{fmt(row.reference)} {row.unit} ({row.reference_name})" if row.reference is not None else ""
        if row.reference is None and row.reference_name:
            ref = row.reference_name
        ratio = "" if row.ratio is None else f"{row.ratio:.3g}x" if row.ratio < 10 else f"{row.ratio:.0f}x"
        met = {True: "yes", False: "NO", None: "" if not row.target else "n/a"}[row.met]
        lines.append((row.benchmark, ours, ref, ratio, row.target, met))
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        return " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [render(header), "-+-".join("-" * w for w in widths)]
    out += [render(line) for line in lines]
    notes = [f"  [{i}] {row.benchmark}: {row.note}" for i, row in enumerate(rows, 1) if row.note]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)


def environment() -> dict[str, Any]:
    import av
    import grpc

    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "grpcio": grpc.__version__,
        "pyav": av.__version__,
        "ffmpeg": av.ffmpeg_version_info,
        "ffprobe": shutil.which("ffprobe"),
    }


def write_json(path: Path, rows: Sequence[Row], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "results": [r.to_json() for r in rows]}, indent=2, default=str) + "\n")
    tmp.replace(path)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- timing ------------------------------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def median_pair(ours: Sequence[float], references: Sequence[float]) -> tuple[float, float]:
    """The (ours, reference) pair of one round whose ratio is the median of the rounds' ratios (the lower middle
    one for an even count): a table row then shows two numbers measured side by side, and its ratio is the
    median pair ratio, not a ratio of medians taken from different rounds."""
    pairs = sorted(zip(ours, references, strict=True), key=lambda pair: pair[0] / pair[1])
    return pairs[(len(pairs) - 1) // 2]


# --- the server under test ---------------------------------------------------------------------------------------


# Set by `python -m bench --profile DIR`: every server under test is sampled by py-spy (collapsed stacks, GIL-holding
# samples only, so the profile shows what keeps the one event-loop thread busy). Summarize with bench/profile.py.
PROFILE_DIR: Path | None = None
_profile_count = 0


@contextlib.contextmanager
def reelscan_server(
    db: Path | str, roots: Sequence[Path], extra_args: Sequence[str] = (), fresh: bool = True
) -> Iterator[ServerProcess]:
    """A real `python -m reelscan.service` on a free port. `db` is a SQLite file (`fresh` deletes it first) or a
    postgresql:// URL (a replica; the caller makes the database fresh, see bench/replicas.py)."""
    if isinstance(db, str):
        name = "pg-" + db.rsplit("/", 1)[-1]
    else:
        name = db.stem
        if fresh:
            remove_db(db)
        db.parent.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(db, allow_roots=roots, extra_args=list(extra_args))
    server.start(timeout=60)
    profiler = _start_profiler(server, name) if PROFILE_DIR is not None else None
    try:
        yield server
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            try:
                profiler.wait(30)
            except subprocess.TimeoutExpired:
                profiler.kill()
        with contextlib.suppress(Exception):
            server.stop()
        server.kill()


def _start_profiler(server: ServerProcess, name: str) -> subprocess.Popen[bytes] | None:
    global _profile_count
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if server.proc is None or not Path(py_spy).exists():
        log("  (py-spy not found: pip install py-spy; not profiling)")
        return None
    assert PROFILE_DIR is not None
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    _profile_count += 1
    out = PROFILE_DIR / f"{_profile_count:02}-{name}.txt"
    cmd = [py_spy, "record", "--pid", str(server.proc.pid), "--format", "raw", "--rate", "250", "--gil"]
    cmd += ["--nonblocking", "--output", str(out)]
    log(f"  profiling server pid {server.proc.pid} -> {out}")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def remove_db(db: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{db}{suffix}").unlink()


def rss_bytes(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def children_rss_bytes(pid: int) -> int:
    total = 0
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total


class PeakRss:
    """Samples a process's RSS in a thread every `interval` seconds; `.peak` is the highest seen."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self._proc = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self.peak = 0
        self.samples = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, int(self._proc.memory_info().rss))
                self.samples += 1
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


KB = 1024
MB = 1024 * 1024


@dataclass
class Context:
    """What a benchmark gets: its sizes and a scratch directory for databases (under var/bench/run)."""

    sizes: Sizes
    work: Path = CACHE / "run"
    meta: dict[str, Any] = field(default_factory=dict)  # anything worth keeping in the JSON besides rows

    def db(self, name: str) -> Path:
        self.work.mkdir(parents=True, exist_ok=True)
        return self.work / f"{name}.db"
