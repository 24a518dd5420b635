"""One server per SQLite file: a second `reelscan serve --db SAME` is refused at once, naming the first one, and
the lock dies with its holder (kill -9 included). Real server processes and a real scan, plus unit tests of
service/sqlite_lock.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from reelscan.service.sqlite_lock import DatabaseInUse, LockHolder, SqliteLock, lock_path_for
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
from tests.media import copy_clip, make_clip

CLIPS = 6
PROBE_DELAY_S = 0.5  # with one probe worker, the scan lasts about CLIPS * PROBE_DELAY_S
RECOVERY_SEQ_JUMP = 1_000_000  # README: seq jumps by this after a crash
REFUSAL_BOUND_S = 10.0  # generous: the refusal itself is well under a second (python start-up included)


def serve(*args: str, timeout: float = 30) -> tuple[subprocess.CompletedProcess[str], float]:
    """Runs `reelscan serve` to its exit; returns the result and how long it ran."""
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "reelscan.service", *args], capture_output=True, text=True, timeout=timeout
    )
    return result, time.monotonic() - began


@pytest.fixture
def videos(media_root: Path) -> Path:
    clip = make_clip(media_root / "clip-0.mp4")
    for i in range(1, CLIPS):
        copy_clip(clip.path, media_root / f"clip-{i}.mp4")
    return media_root


@pytest.fixture
def first(tmp_path: Path, videos: Path) -> Iterator[ServerProcess]:
    args = ["--probe-workers", "1", "--probe-delay", str(PROBE_DELAY_S)]
    with ServerProcess(tmp_path / "reelscan.db", allow_roots=[videos], extra_args=args) as proc:
        yield proc


def job_state(channel: grpc.Channel, job_id: str) -> job_pb2.Job:
    jobs = job_service_pb2_grpc.JobServiceStub(channel)
    job: job_pb2.Job = jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id), timeout=10).job
    return job


def wait_running(channel: grpc.Channel, job_id: str) -> None:
    deadline = time.monotonic() + 20
    while job_state(channel, job_id).state != job_pb2.JOB_STATE_RUNNING:
        assert time.monotonic() < deadline, "the scan never started running"
        time.sleep(0.02)


def test_second_server_on_the_same_file_is_refused_and_the_first_finishes_its_scan(
    first: ServerProcess, videos: Path
) -> None:
    assert first.proc is not None
    with grpc.insecure_channel(first.address) as channel:
        scans = scan_service_pb2_grpc.ScanServiceStub(channel)
        job = scans.StartScan(scan_service_pb2.StartScanRequest(path=str(videos)), timeout=10).job
        wait_running(channel, job.id)

        result, elapsed = serve("--listen", "127.0.0.1:0", "--db", str(first.db_path), "--grace-period", "2")
        print(f"\nsecond server refused after {elapsed:.3f}s (process start to exit)")
        assert result.returncode == 1, result.stderr
        assert elapsed < REFUSAL_BOUND_S
        message = (
            f"reelscan serve: error: {first.db_path} is in use by another reelscan server "
            f"(pid {first.proc.pid}, listening on {first.address}, since "
        )
        assert message in result.stderr
        assert "one server per SQLite file" in result.stderr
        assert "Traceback" not in result.stderr
        assert "reelscan listening on" not in result.stderr  # refused before binding anything

        # The first server never noticed: its scan runs to the end, every clip probed once, by it alone.
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        updates = list(jobs.WatchJob(job_service_pb2.WatchJobRequest(job_id=job.id), timeout=60))
        final = updates[-1]
        assert final.state == job_pb2.JOB_STATE_SUCCEEDED, final.error
        assert (final.result.discovered, final.result.new, final.result.failed) == (CLIPS, CLIPS, 0)
        assert final.seq < RECOVERY_SEQ_JUMP  # never re-queued as a crashed job by another server
        library = library_pb2_grpc.LibraryServiceStub(channel)
        listed = library.ListVideos(library_pb2.ListVideosRequest(path_prefix=str(videos)), timeout=10)
        assert len(listed.videos) == CLIPS
    assert first.proc.poll() is None


def test_after_kill_9_a_new_server_starts_on_the_file_at_once(first: ServerProcess, videos: Path) -> None:
    assert first.proc is not None
    old_pid = first.proc.pid
    with grpc.insecure_channel(first.address) as channel:
        scans = scan_service_pb2_grpc.ScanServiceStub(channel)
        job = scans.StartScan(scan_service_pb2.StartScanRequest(path=str(videos)), timeout=10).job
        wait_running(channel, job.id)  # probe workers busy too: they must not keep the lock alive

    first.kill()  # SIGKILL mid-scan: nothing runs to release the lock but the kernel
    began = time.monotonic()
    with ServerProcess(first.db_path, allow_roots=[videos]) as second:
        started = time.monotonic() - began
        print(f"\nnew server SERVING {started:.3f}s after the kill -9")
        assert started < REFUSAL_BOUND_S
        assert second.proc is not None
        holder = json.loads(lock_path_for(first.db_path).read_text())
        assert holder["pid"] == second.proc.pid != old_pid
        assert holder["address"] == second.address
        with grpc.insecure_channel(second.address) as channel:
            # It serves the same database: the interrupted scan is there, re-queued and run to the end.
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            updates = list(jobs.WatchJob(job_service_pb2.WatchJobRequest(job_id=job.id), timeout=60))
            assert updates[-1].state == job_pb2.JOB_STATE_SUCCEEDED, updates[-1].error


def test_a_clean_stop_frees_the_file_for_the_next_server(first: ServerProcess, videos: Path) -> None:
    assert first.stop() == 0
    with ServerProcess(first.db_path, allow_roots=[videos]):
        pass


def test_a_refusal_while_the_holder_is_writing_still_names_the_holder(tmp_path: Path) -> None:
    """The holder in the middle of a write transaction (a scan's batch): the refusal names it at once, where an
    open of the file that waited for SQLite's write lock used to end in "database is locked"."""
    db = tmp_path / "reelscan.db"
    holder = asyncio.run(SqliteLock.acquire(db))
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("CREATE TABLE batch (x INTEGER)")
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO batch VALUES (1)")
        result, elapsed = serve("--listen", "127.0.0.1:0", "--db", str(db), "--grace-period", "2")
        print(f"\nrefused after {elapsed:.3f}s while the holder was writing")
        assert result.returncode == 1, result.stderr
        expected = f"{db} is in use by another reelscan server (pid {os.getpid()}, starting, not listening yet"
        assert expected in result.stderr
        assert "database is locked" not in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        asyncio.run(holder.release())


# --- the lock module -------------------------------------------------------------------------------------------


async def test_second_acquire_is_refused_with_the_holders_pid_and_address(tmp_path: Path) -> None:
    db = tmp_path / "reelscan.db"
    lock = await SqliteLock.acquire(db)
    try:
        with pytest.raises(DatabaseInUse) as starting:
            await SqliteLock.acquire(db)
        assert starting.value.holder == LockHolder(os.getpid(), None, lock.started)
        assert f"(pid {os.getpid()}, starting, not listening yet, since {lock.started})" in str(starting.value)

        await lock.update_address("127.0.0.1:1234")
        with pytest.raises(DatabaseInUse) as listening:
            await SqliteLock.acquire(db)
        assert str(listening.value).startswith(
            f"{db} is in use by another reelscan server (pid {os.getpid()}, listening on 127.0.0.1:1234, "
            f"since {lock.started}); one server per SQLite file"
        )
        assert isinstance(listening.value, RuntimeError)
    finally:
        await lock.release()
    assert not lock.held
    await lock.release()  # idempotent

    again = await SqliteLock.acquire(db)
    await again.release()
    assert lock_path_for(db) == tmp_path / "reelscan.db.lock"


async def test_a_symlinked_db_path_finds_the_same_lock(tmp_path: Path) -> None:
    real = tmp_path / "real.db"
    link = tmp_path / "link.db"
    real.touch()
    link.symlink_to(real)
    async with await SqliteLock.acquire(real):
        with pytest.raises(DatabaseInUse):
            await SqliteLock.acquire(link)


@pytest.mark.parametrize("content", [b"", b'{"pid": 12', b"\xff\xfe", b"[1, 2]", b'{"pid": "x"}'])
async def test_an_empty_or_torn_lock_file_says_pid_unknown(tmp_path: Path, content: bytes) -> None:
    db = tmp_path / "reelscan.db"
    async with await SqliteLock.acquire(db) as lock:
        lock.path.write_bytes(content)  # flock is advisory: this writes over the holder's record
        with pytest.raises(DatabaseInUse) as info:
            await SqliteLock.acquire(db)
    assert info.value.holder == LockHolder()
    assert "(pid unknown)" in str(info.value)


HOLD = """
import asyncio, sys
from pathlib import Path
from reelscan.service.sqlite_lock import SqliteLock

async def main():
    lock = await SqliteLock.acquire(Path(sys.argv[1]))
    await lock.update_address("127.0.0.1:9")
    print("locked", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_lock_file_left_by_a_killed_process_does_not_block(tmp_path: Path) -> None:
    db = tmp_path / "reelscan.db"
    holder = await asyncio.create_subprocess_exec(sys.executable, "-c", HOLD, str(db), stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"locked\n"
        with pytest.raises(DatabaseInUse) as info:
            await SqliteLock.acquire(db)
        assert info.value.holder.pid == holder.pid
        assert info.value.holder.address == "127.0.0.1:9"
    finally:
        holder.kill()
        await holder.wait()
    stale = json.loads(lock_path_for(db).read_text())
    assert stale["pid"] == holder.pid  # the record is still there; nobody holds the lock any more
    lock = await SqliteLock.acquire(db)
    try:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    finally:
        await lock.release()
