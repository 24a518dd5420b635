"""A claim that reaches the database after its sender's lease expired takes nothing.

Seen in test_replicas.py's PostgreSQL restart: a replica's claim, sent while its lease was still good, waited for a
pool connection through the outage and ran once the database was back, after the lease had expired and other
replicas had re-queued the jobs. It took them under the dead owner id, so nobody ran them until recovery came round
again and counted a second crash against each (a job is failed after three). Two stores on one database here, as
two replicas have, so the order of events is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from reelscan.service.jobs.model import Job, JobKind, JobState
from reelscan.service.jobs.pg_store import PgJobStore
from reelscan.service.jobs.store import Owner
from reelscan.service.pg.database import PgDatabase

SHORT_TTL_S = 0.3


@contextlib.asynccontextmanager
async def replica_store(url: str) -> AsyncIterator[PgJobStore]:
    db = await PgDatabase.open(url)
    try:
        store = await PgJobStore.open(db)
        try:
            yield store
        finally:
            await store.close()
    finally:
        await db.close()


def pending(n: int) -> Job:
    return Job(
        id=f"job-{n}",
        kind=JobKind.SCAN,
        state=JobState.PENDING,
        spec={"path": f"/media/{n}"},
        timeout_s=60.0,
        create_time=1.0,
        update_time=1.0,
        seq=1,
    )


@pytest.fixture
async def two_replicas(pg_url: str) -> AsyncIterator[tuple[PgJobStore, PgJobStore]]:
    async with replica_store(pg_url) as a, replica_store(pg_url) as b:
        yield a, b


async def test_a_claim_for_an_expired_lease_takes_nothing(two_replicas: tuple[PgJobStore, PgJobStore]) -> None:
    late, live = two_replicas
    await late.register_owner(Owner("late"), SHORT_TTL_S)
    await live.register_owner(Owner("live"), 60.0)
    await asyncio.sleep(SHORT_TTL_S + 0.3)  # "late" stopped heartbeating (cut off); its claim arrives only now
    await live.insert(pending(1))
    assert await late.claim("late", [JobKind.SCAN], 5) == [], "a claim for an expired lease took a job"
    assert await live.recover_expired() == []  # nothing was left RUNNING under the dead owner
    (job,) = await live.claim("live", [JobKind.SCAN], 5)
    assert (job.id, job.owner, job.epoch, job.recoveries) == ("job-1", "live", 1, 0)


async def test_a_live_lease_claims_as_before(two_replicas: tuple[PgJobStore, PgJobStore]) -> None:
    a, b = two_replicas
    await a.register_owner(Owner("a"), 60.0)
    for n in range(3):
        await b.insert(pending(n))
    claimed = await a.claim("a", [JobKind.SCAN], 2)
    assert [(j.id, j.owner, j.state) for j in claimed] == [
        ("job-0", "a", JobState.RUNNING),
        ("job-1", "a", JobState.RUNNING),
    ]
    assert [j.id for j in await b.claim("b-never-registered", [JobKind.SCAN], 5)] == ["job-2"]
