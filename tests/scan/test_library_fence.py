"""Library writes are fenced on the job's claim (LibraryStore.write_batch / mark_missing with `fence`): a server
that lost its job (lease expired, the job recovered and claimed again elsewhere) writes nothing to the library,
on SQLite and on PostgreSQL, the job store and the library store sharing one database as a server's do.
(tests/replicas: a frozen replica's late batches never land, seen by a trigger on the library tables.)"""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from reelscan.service.config import Settings
from reelscan.service.jobs.handler import Claim, JobLost
from reelscan.service.jobs.model import Job, JobKind, JobState
from reelscan.service.jobs.pg_store import PgJobStore
from reelscan.service.jobs.sqlite_store import SqliteJobStore
from reelscan.service.jobs.store import JobStore, Owner
from reelscan.service.pg.database import PgDatabase
from reelscan.service.scan import pg_library_store
from reelscan.service.scan.library_model import ProbedFile, ScanErrorRecord, VideoFilter, VideoStatus
from reelscan.service.scan.library_store import LibraryStore
from reelscan.service.scan.media_info import ProbeErrorKind
from reelscan.service.scan.pg_library_store import PgLibraryStore
from reelscan.service.scan.sqlite_library_store import SqliteLibraryStore
from reelscan.service.storage import open_stores


@dataclass
class Database:
    jobs: JobStore
    library: LibraryStore


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        path = tmp_path / "reelscan.db"
        jobs: JobStore = await SqliteJobStore.open(path)
        library: LibraryStore = await SqliteLibraryStore.open(path)
        try:
            yield Database(jobs, library)
        finally:
            await library.close()
            await jobs.close()
        return
    db = await PgDatabase.open(request.getfixturevalue("pg_url"))
    try:
        jobs = await PgJobStore.open(db)
        library = await PgLibraryStore.open(db)
        try:
            yield Database(jobs, library)
        finally:
            await library.close()
            await jobs.close()
    finally:
        await db.close()


async def claimed(store: JobStore, owner: str, ttl_s: float) -> Job:
    await store.register_owner(Owner(owner), ttl_s)
    (job,) = await store.claim(owner, [JobKind.SCAN], 1)
    return job


def broken(path: str) -> ProbedFile:
    return ProbedFile(path, 1, 1, None, "empty file", ProbeErrorKind.PROBE_FAILED)


async def paths(library: LibraryStore) -> list[str]:
    """The library's broken files that are on disk (what the test writes), by path."""
    videos, _ = await library.list_videos(VideoFilter(statuses=frozenset({VideoStatus.FAILED})), 100, "")
    return sorted(v.path for v in videos)


async def test_a_claim_that_holds_writes_and_a_lost_one_writes_nothing(database: Database) -> None:
    jobs, library = database.jobs, database.library
    await jobs.insert(Job("job-1", JobKind.SCAN, JobState.PENDING, {"path": "/m"}, 60.0, 1.0, 1.0, seq=1))
    first = await claimed(jobs, "A", ttl_s=0.2)
    claim = Claim(first.id, first.owner, first.epoch)
    await library.write_batch(
        [broken("/m/a.mp4")], [ScanErrorRecord("job-1", "/m/a.mp4", ProbeErrorKind.PROBE_FAILED, "x", 1.0)], fence=claim
    )
    assert await paths(library) == ["/m/a.mp4"]

    await asyncio.sleep(0.3)  # A's lease expires; its job is recovered and claimed by B
    (recovered,) = await jobs.recover_expired()
    assert recovered.state is JobState.PENDING
    second = await claimed(jobs, "B", ttl_s=60)
    assert second.id == "job-1" and second.epoch == first.epoch + 1

    with pytest.raises(JobLost):
        await library.write_batch([broken("/m/late.mp4")], fence=claim)  # A, resumed after a pause
    with pytest.raises(JobLost):
        await library.mark_missing(["/m/a.mp4"], fence=claim)
    assert await paths(library) == ["/m/a.mp4"]  # nothing of A's landed, the file is not marked missing

    await library.write_batch([broken("/m/b.mp4")], fence=Claim(second.id, second.owner, second.epoch))
    await library.mark_missing(["/m/a.mp4"], fence=Claim(second.id, second.owner, second.epoch))
    assert await paths(library) == ["/m/b.mp4"]  # B's writes land (a.mp4 is missing now)


async def test_a_writer_frozen_inside_its_fenced_transaction_does_not_keep_its_job_from_recovery(pg_url: str) -> None:
    """The fence's FOR SHARE row lock is held until the write commits. A replica frozen (SIGSTOP, a stalled VM)
    inside that transaction would hold it for as long as it stays frozen, and recovery (FOR UPDATE SKIP LOCKED)
    would skip the job all that time. A server's database (storage.open_stores) ends a session left idle in a
    transaction for a whole lease, so the job is recovered and nothing of the frozen write commits."""
    ttl_s = 0.5
    stores = await open_stores(Settings(db_url=pg_url, lease_ttl_s=ttl_s))
    try:
        jobs, library = stores.jobs, stores.library
        assert isinstance(library, PgLibraryStore)
        await jobs.insert(Job("job-1", JobKind.SCAN, JobState.PENDING, {"path": "/m"}, 60.0, 1.0, 1.0, seq=1))
        first = await claimed(jobs, "A", ttl_s=ttl_s)
        async with library._db.pool.connection() as conn:
            with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
                async with conn.transaction(), conn.cursor() as cursor:
                    await pg_library_store._check_fence(cursor, Claim(first.id, first.owner, first.epoch))
                    # ... and the process freezes here, its transaction open, its lease no longer renewed.
                    recovered, waited_s = await recover(jobs)
                    await cursor.execute("SELECT 1")  # resumed: the server has ended the session
        assert [job.id for job in recovered] == ["job-1"], "the frozen writer's row lock kept the job from recovery"
        assert waited_s < ttl_s * 2 + 1, waited_s
        second = await claimed(jobs, "B", ttl_s=60)
        assert second.epoch == first.epoch + 1
    finally:
        await stores.close()


async def test_a_writer_frozen_in_the_middle_of_its_copy_does_not_keep_its_job_from_recovery(pg_url: str) -> None:
    """PostgreSQL waits for a COPY's rows without limit (such a session is not idle, and statement_timeout does not
    end it), so a process frozen in the middle of write_batch's COPY must not hold the fence's lock yet. A real
    writer process, frozen with SIGSTOP while pg_stat_activity shows its COPY running."""
    app = f"frozen-writer-{uuid.uuid4().hex[:8]}"
    db = await PgDatabase.open(pg_url)
    jobs = await PgJobStore.open(db)
    writer: asyncio.subprocess.Process | None = None
    try:
        await jobs.insert(Job("job-1", JobKind.SCAN, JobState.PENDING, {"path": "/m"}, 60.0, 1.0, 1.0, seq=1))
        first = await claimed(jobs, "A", ttl_s=60)
        url = f"{pg_url}{'&' if '?' in pg_url else '?'}application_name={app}"
        writer = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.helpers.library_writer",
            url,
            first.id,
            first.owner,
            str(first.epoch),
            "20000",
            stdout=asyncio.subprocess.PIPE,
        )
        assert writer.stdout is not None
        assert await asyncio.wait_for(writer.stdout.readline(), 60) == b"writing\n"
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as watcher:

            async def copying() -> bool:
                cursor = await watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'active' "
                    "AND query LIKE 'COPY library_batch%%'",
                    (app,),
                )
                row = await cursor.fetchone()
                return row is not None and row[0] > 0

            for _ in range(2000):
                if await copying():
                    writer.send_signal(signal.SIGSTOP)
                    if await copying():  # still in it, now frozen
                        break
                    writer.send_signal(signal.SIGCONT)
                await asyncio.sleep(0.005)
            else:
                pytest.fail("never saw the writer inside its COPY")
            await jobs.register_owner(Owner("A"), 0.0)  # A's lease ends now, as a frozen owner's does
            recovered, waited_s = await recover(jobs)
            still_copying = await copying()

            async def written() -> int:
                cursor = await watcher.execute("SELECT count(*) FROM videos WHERE path LIKE '/frozen/%%'")
                row = await cursor.fetchone()
                return int(row[0]) if row else 0

            before_resume = await written()
            assert still_copying, "the writer left its COPY while frozen"
            assert [job.id for job in recovered] == ["job-1"], "the frozen writer kept the job from recovery"
            assert waited_s < 2, waited_s
            writer.send_signal(signal.SIGCONT)
            assert await asyncio.wait_for(writer.wait(), 60) == 3  # resumed: its write is refused (JobLost)
            assert await written() == before_resume, "the resumed writer's batch landed after its job was recovered"
    finally:
        if writer is not None and writer.returncode is None:
            writer.send_signal(signal.SIGCONT)
            writer.kill()
            await writer.wait()
        await jobs.close()
        await db.close()


async def recover(jobs: JobStore) -> tuple[list[Job], float]:
    """Runs recovery, as a peer replica does, until it takes a job back (or 10 s pass)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    recovered: list[Job] = []
    while not recovered and loop.time() - started < 10:
        await asyncio.sleep(0.1)
        recovered = await jobs.recover_expired()
    return recovered, loop.time() - started
