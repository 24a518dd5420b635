"""Library writes are fenced on the job's claim (LibraryStore.write_batch / mark_missing with `fence`): a server
that lost its job (lease expired, the job recovered and claimed again elsewhere) writes nothing to the library,
on SQLite and on PostgreSQL, the job store and the library store sharing one database as a server's do.
(tests/replicas: a frozen replica's late batches never land, seen by a trigger on the library tables.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from reelscan.service.config import Settings
from reelscan.service.jobs.handler import Claim, JobLost
from reelscan.service.jobs.model import Job, JobKind, JobState
from reelscan.service.jobs.pg_store import FENCE_CHECK, PgJobStore
from reelscan.service.jobs.sqlite_store import SqliteJobStore
from reelscan.service.jobs.store import JobStore, Owner
from reelscan.service.pg.database import PgDatabase
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
    between the fence check and its commit would hold it for as long as it stays frozen, and recovery (FOR UPDATE
    SKIP LOCKED) would skip the job all that time. The server's pool (storage.open_stores) tells PostgreSQL to end a
    session idle in a transaction for a whole lease, so the job is recovered and the frozen write never lands."""
    ttl_s = 0.5
    stores = await open_stores(Settings(db_url=pg_url, lease_ttl_s=ttl_s))
    try:
        jobs, library = stores.jobs, stores.library
        assert isinstance(library, PgLibraryStore)
        await jobs.insert(Job("job-1", JobKind.SCAN, JobState.PENDING, {"path": "/m"}, 60.0, 1.0, 1.0, seq=1))
        first = await claimed(jobs, "A", ttl_s=ttl_s)
        async with library._db.pool.connection() as conn:
            await conn.execute("BEGIN")
            cursor = await conn.execute(FENCE_CHECK, {"id": first.id, "owner": first.owner, "epoch": first.epoch})
            assert await cursor.fetchone() is not None
            # ... and the process freezes here, its transaction open, its lease no longer renewed.
            started = asyncio.get_running_loop().time()
            recovered: list[Job] = []
            while not recovered and asyncio.get_running_loop().time() - started < 10:
                await asyncio.sleep(0.1)
                recovered = await jobs.recover_expired()
            waited_s = asyncio.get_running_loop().time() - started
            assert [job.id for job in recovered] == ["job-1"], "the frozen writer's row lock kept the job from recovery"
            assert waited_s < ttl_s * 2 + 1, waited_s
            # Resumed: the server ended its session, so nothing of the transaction commits.
            with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
                await conn.execute("COMMIT")
        second = await claimed(jobs, "B", ttl_s=60)
        assert second.epoch == first.epoch + 1
    finally:
        await stores.close()
