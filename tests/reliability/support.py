"""Helpers shared by the reliability suite: a blocking client over the real API, library snapshots, direct checks
of the SQLite file, server memory, and the figures the suite measures (printed at the end of the run).

Everything here talks to a real server process (tests/helpers/server.py) or reads its real database file.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import grpc
import psutil
from google.protobuf import duration_pb2
from google.protobuf.json_format import MessageToDict
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reelscan.v1 import (
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    library_pb2,
    library_pb2_grpc,
    scan_service_pb2,
    scan_service_pb2_grpc,
)
from tests.helpers.server import ServerProcess

ACTIVE = (job_pb2.JOB_STATE_PENDING, job_pb2.JOB_STATE_RUNNING)
TERMINAL = (
    job_pb2.JOB_STATE_SUCCEEDED,
    job_pb2.JOB_STATE_FAILED,
    job_pb2.JOB_STATE_CANCELLED,
    job_pb2.JOB_STATE_TIMED_OUT,
)
# Per-video fields that differ between two libraries built from the same files at different times.
VOLATILE_VIDEO_FIELDS = ("id", "probeTime", "createTime")

# Figures measured by the suite (name -> value), printed by conftest.py's terminal summary.
FIGURES: dict[str, object] = {}


def record(name: str, value: object) -> None:
    FIGURES[name] = value


class Client:
    """A blocking client on its own channel. Open a new one after a restart: an old channel may sit in
    reconnect back-off for a second or more after its server died."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        self.channel = grpc.insecure_channel(address)
        self.timeout = timeout
        self.scans = scan_service_pb2_grpc.ScanServiceStub(self.channel)
        self.jobs = job_service_pb2_grpc.JobServiceStub(self.channel)
        self.library = library_pb2_grpc.LibraryServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, path: str | Path, **fields: Any) -> scan_service_pb2.StartScanResponse:
        request = scan_service_pb2.StartScanRequest(path=str(path), **fields)
        response: scan_service_pb2.StartScanResponse = self.scans.StartScan(request, timeout=self.timeout)
        return response

    def get(self, job_id: str) -> job_pb2.Job:
        response = self.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id), timeout=self.timeout)
        job: job_pb2.Job = response.job
        return job

    def wait(self, job_id: str, seconds: float = 120.0) -> job_pb2.Job:
        """WaitJob until the job is terminal (in slices, so no single call outlives its deadline)."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"job {job_id} still not terminal after {seconds}s: {self.get(job_id)}")
            wait_s = int(min(left, 20)) + 1
            request = job_service_pb2.WaitJobRequest(job_id=job_id, timeout=duration_pb2.Duration(seconds=wait_s))
            started = time.monotonic()
            response = self.jobs.WaitJob(request, timeout=wait_s + 5)
            if response.done:
                job: job_pb2.Job = response.job
                return job
            if time.monotonic() - started < wait_s / 2:
                # WaitJob answers at once for jobs the engine no longer runs: this one's end was never stored.
                raise AssertionError(
                    f"job {job_id} is {job_pb2.JobState.Name(response.job.state)} in the store but not running: "
                    "its end was never stored (as in test_load.py::test_job_store_writes_survive_concurrent_reads)"
                )

    def scan(self, path: str | Path, seconds: float = 120.0, **fields: Any) -> job_pb2.Job:
        """StartScan and wait for the job to end; returns the terminal job."""
        return self.wait(self.start(path, **fields).job.id, seconds)

    def list_jobs(self, states: Sequence[int] = ()) -> list[job_pb2.Job]:
        jobs: list[job_pb2.Job] = []
        token = ""
        while True:
            request = job_service_pb2.ListJobsRequest(states=list(states), page_size=1000, page_token=token)
            response = self.jobs.ListJobs(request, timeout=self.timeout)
            jobs += response.jobs
            token = response.next_page_token
            if not token:
                return jobs

    def wait_all_settled(self, seconds: float = 120.0) -> list[job_pb2.Job]:
        """Waits until no job is pending or running; returns every job."""
        deadline = time.monotonic() + seconds
        while True:
            active = self.list_jobs(ACTIVE)
            if not active:
                return self.list_jobs()
            for job in active:
                self.wait(job.id, max(1.0, deadline - time.monotonic()))

    def videos(self, **fields: Any) -> list[library_pb2.Video]:
        found: list[library_pb2.Video] = []
        token = ""
        while True:
            request = library_pb2.ListVideosRequest(page_size=1000, page_token=token, **fields)
            response = self.library.ListVideos(request, timeout=self.timeout)
            found += response.videos
            token = response.next_page_token
            if not token:
                return found

    def errors(self, job_id: str) -> list[library_pb2.ScanError]:
        found: list[library_pb2.ScanError] = []
        token = ""
        while True:
            request = library_pb2.ListScanErrorsRequest(job_id=job_id, page_size=1000, page_token=token)
            response = self.library.ListScanErrors(request, timeout=self.timeout)
            found += response.errors
            token = response.next_page_token
            if not token:
                return found

    def health_status(self) -> int:
        response = self.health.Check(health_pb2.HealthCheckRequest(), timeout=self.timeout)
        return int(response.status)

    def serving(self) -> bool:
        return self.health_status() == health_pb2.HealthCheckResponse.SERVING


def library_path(path: bytes | str | Path) -> str:
    """How the library names a file (Video.path): the path itself, unless it holds a backslash or bytes that are not
    UTF-8; then backslashes are doubled and each undecodable byte is written \\xNN (one-to-one, valid UTF-8)."""
    raw = os.fsencode(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and "\\" not in text:
        return text
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def library_snapshot(videos: Iterable[library_pb2.Video]) -> dict[str, dict[str, Any]]:
    """Path -> every metadata field of the video, without ids and timestamps of when it was probed."""
    snapshot: dict[str, dict[str, Any]] = {}
    for video in videos:
        fields = MessageToDict(video, preserving_proto_field_name=False)
        for name in VOLATILE_VIDEO_FIELDS:
            fields.pop(name, None)
        assert video.path not in snapshot, f"duplicate path in the library: {video.path}"
        snapshot[video.path] = fields
    return snapshot


# --- the database file, read directly ------------------------------------------------------------------------


@contextmanager
def open_db(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to the server's database (the server may be running: WAL readers are fine)."""
    with closing(sqlite3.connect(db_path, timeout=30)) as conn:
        yield conn


def integrity_problems(db_path: Path) -> list[str]:
    """Empty when the file is sound: PRAGMA integrity_check, the FTS5 index against its content table, and the
    uniqueness the schema promises."""
    problems: list[str] = []
    with open_db(db_path) as conn:
        result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if result != ["ok"]:
            problems.append(f"integrity_check: {result[:10]}")
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "videos_fts" in tables:
            try:
                conn.execute("INSERT INTO videos_fts (videos_fts) VALUES ('integrity-check')")
            except sqlite3.DatabaseError as error:
                problems.append(f"videos_fts integrity-check: {error}")
            fts_rows = conn.execute("SELECT COUNT(*) FROM videos_fts").fetchone()[0]
            rows = conn.execute("SELECT COUNT(*) FROM videos").fetchone()[0]
            if fts_rows != rows:
                problems.append(f"videos_fts has {fts_rows} rows for {rows} videos")
        if "videos" in tables:
            dup = conn.execute("SELECT path, COUNT(*) FROM videos GROUP BY path HAVING COUNT(*) > 1").fetchall()
            if dup:
                problems.append(f"duplicate video paths: {dup[:5]}")
        if "scan_errors" in tables:
            dup = conn.execute(
                "SELECT job_id, path, COUNT(*) FROM scan_errors GROUP BY job_id, path HAVING COUNT(*) > 1"
            ).fetchall()
            if dup:
                problems.append(f"duplicate scan errors: {dup[:5]}")
    return problems


def db_job_states(db_path: Path) -> dict[str, int]:
    """Job id -> state number, straight from the jobs table."""
    with open_db(db_path) as conn:
        return {job_id: state for job_id, state in conn.execute("SELECT id, state FROM jobs")}


def db_video_rows(db_path: Path) -> dict[str, tuple[str, int]]:
    """Path -> (status, missing) of every library row."""
    with open_db(db_path) as conn:
        return {p: (s, m) for p, s, m in conn.execute("SELECT path, status, missing FROM videos")}


def wal_uncommitted_frames(db_path: Path) -> int:
    """Frames at the end of the WAL file that belong to no committed transaction: a writer was interrupted
    between writing a transaction's pages and its commit frame. Read before anything opens the database
    (opening it runs WAL recovery). 0 when there is no WAL."""
    wal = Path(f"{db_path}-wal")
    try:
        data = wal.read_bytes()
    except FileNotFoundError:
        return 0
    if len(data) < 32:
        return 0
    magic, _version, page_size, _checkpoint, salt1, salt2 = struct.unpack(">IIIIII", data[:24])
    if magic not in (0x377F0682, 0x377F0683) or page_size < 512:
        return 0
    frame = 24 + page_size
    trailing = 0
    offset = 32
    while offset + frame <= len(data):
        _page, commit_size, fsalt1, fsalt2 = struct.unpack(">IIII", data[offset : offset + 16])
        if (fsalt1, fsalt2) != (salt1, salt2):
            break  # the rest is left over from before the last WAL reset
        trailing = 0 if commit_size else trailing + 1
        offset += frame
    return trailing


# --- the server process --------------------------------------------------------------------------------------


def rss_bytes(server: ServerProcess) -> int:
    """Resident memory of the server process itself (not its probe workers)."""
    assert server.proc is not None
    return int(psutil.Process(server.proc.pid).memory_info().rss)


def probe_workers(server: ServerProcess) -> list[psutil.Process]:
    """Live probe worker processes of the server."""
    assert server.proc is not None
    return [p for p in psutil.Process(server.proc.pid).children() if p.is_running() and p.status() != "zombie"]


def running_as_root() -> bool:
    return os.geteuid() == 0


SETPRIV_DROP_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


def can_drop_dac_override(probe_dir: Path) -> bool:
    """True if `setpriv` can start a process without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH, so that permission
    bits bind even for root (then chmod 000 makes a file unreadable to the server, as for any other user)."""
    if shutil.which("setpriv") is None:
        return False
    secret = probe_dir / ".dac-probe"
    secret.write_bytes(b"x")
    secret.chmod(0)
    try:
        done = subprocess.run([*SETPRIV_DROP_DAC, "cat", str(secret)], capture_output=True, timeout=10)
        return done.returncode != 0 and b"ermission denied" in done.stderr
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        secret.chmod(0o600)
        secret.unlink()


class UnprivilegedServer(ServerProcess):
    """A ServerProcess whose server runs without the capabilities that let root ignore file permissions."""

    def command(self) -> list[str]:
        return [*SETPRIV_DROP_DAC, *super().command()]


def wait_until(predicate: Any, seconds: float, interval: float = 0.02, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(interval)


def code_of(error: grpc.RpcError) -> grpc.StatusCode:
    code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
    return code
