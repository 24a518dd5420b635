"""The JobStore contract (service/jobs/store.py), written once and run against every implementation in
store_factories.JOB_STORES: round trips, submit (dedup, queue bound), claims exactly once, fenced owner writes,
the cancel flag, leases and crash recovery, the change feed, listing, retention and deletion.

Tests that need two replicas open two stores on one database (`store_pair`): two connections, as two servers have.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from reelscan.service.errors import InvalidArgument, ResourceExhausted
from reelscan.service.jobs import page_token
from reelscan.service.jobs.feed import ChangeEvent
from reelscan.service.jobs.model import (
    ABORTED,
    MAX_CRASH_RECOVERIES,
    RECOVERY_SEQ_GAP,
    Job,
    JobCounts,
    JobError,
    JobKind,
    JobState,
    Progress,
    Stage,
    requeue_interrupted,
    transition,
)
from reelscan.service.jobs.store import JobStore, Owner
from tests.jobs.store_factories import JOB_STORES, JobDatabaseFactory, StoreSet

T0 = 1_700_000_000.0
# Leases are real time. A test sets a lease up with LONG_TTL_S, then shortens it to SHORT_TTL_S (renew_lease) once
# its jobs are in place, and sleeps EXPIRE_S: so nothing depends on how fast the set-up ran.
SHORT_TTL_S = 0.1
EXPIRE_S = 0.25
LONG_TTL_S = 60.0


# ---- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture(params=JOB_STORES, ids=[name for name, _ in JOB_STORES])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreSet]:
    name, factory = cast(tuple[str, JobDatabaseFactory], request.param)
    store_set = StoreSet(name, await factory(tmp_path, request))
    try:
        yield store_set
    finally:
        await store_set.close_all()


@pytest.fixture
async def job_store(stores: StoreSet) -> JobStore:
    return await stores.open()


@pytest.fixture
async def store_pair(stores: StoreSet) -> tuple[JobStore, JobStore]:
    """Two stores on one database, as two replicas have."""
    return await stores.open(), await stores.open()


# ---- helpers ---------------------------------------------------------------------------------------------------


def new_job(n: int, *, key: str = "", **changes: Any) -> Job:
    """A PENDING scan job `job-NNN`, created at T0 + n."""
    job = Job(
        id=f"job-{n:03d}",
        kind=JobKind.SCAN,
        state=JobState.PENDING,
        spec={"path": f"/media/{n}", "recursive": True, "extensions": ["mp4", "mkv"]},
        timeout_s=12.5,
        create_time=T0 + n,
        update_time=T0 + n,
        seq=1,
        dedup_key=key,
    )
    return dataclasses.replace(job, **changes)


async def get(store: JobStore, job_id: str) -> Job:
    job = await store.get(job_id)
    assert job is not None, job_id
    return job


async def running(store: JobStore, n: int, owner: str = "A", **changes: Any) -> Job:
    """Inserts job n as PENDING and claims it for `owner` (the only pending job of the test at that moment), after
    (re)starting `owner`'s lease for LONG_TTL_S: an owner writes only while its lease lives."""
    await store.register_owner(Owner(owner), LONG_TTL_S)
    await store.insert(new_job(n, **changes))
    (job,) = await store.claim(owner, [JobKind.SCAN], 1)
    assert job.id == new_job(n).id
    return job


async def all_ids(store: JobStore, **filters: Any) -> list[str]:
    jobs, token = await store.list_page(
        states=filters.get("states", ()), kinds=filters.get("kinds", ()), page_size=1000, page_token=""
    )
    assert token == ""
    return [j.id for j in jobs]


def progressed(job: Job, fraction: float, *, seq_step: int = 1, **changes: Any) -> Job:
    """The owner's next RUNNING snapshot: newer seq, more progress."""
    done = int(fraction * 10)
    return dataclasses.replace(
        job,
        seq=job.seq + seq_step,
        update_time=job.update_time + 1,
        progress=Progress(fraction, Stage.PROBING, done, 10, f"/media/{done}.mp4", 2.5, 4.0),
        result={"probed": done},
        **changes,
    )


class Recorder:
    """A change listener that keeps every event, and (if given `committed`) what was committed when it came."""

    def __init__(self, committed: Callable[[str], tuple[int, JobState, bool] | None] | None = None) -> None:
        self.events: list[ChangeEvent] = []
        self.seen_committed: list[tuple[int, JobState, bool] | None] = []
        self.resyncs = 0
        self._committed = committed

    def job_changed(self, event: ChangeEvent) -> None:
        self.events.append(event)
        if self._committed is not None:
            self.seen_committed.append(self._committed(event.job_id))

    def resync(self) -> None:
        self.resyncs += 1

    async def during(self, action: Awaitable[Any]) -> list[ChangeEvent]:
        """The events emitted while `action` ran."""
        before = len(self.events)
        await action
        return self.events[before:]


# ---- round trips -----------------------------------------------------------------------------------------------


async def test_insert_then_get_round_trips_every_field(job_store: JobStore) -> None:
    job = Job(
        id="every-field",
        kind=JobKind.SCAN,
        state=JobState.FAILED,
        spec={"path": "/m/é", "recursive": False, "extensions": ["mp4", "mkv"], "nested": {"a": [1, 2.5, None]}},
        timeout_s=12.5,
        create_time=T0 + 0.125,
        update_time=T0 + 7.5,
        seq=42,
        progress=Progress(0.625, Stage.PROBING, 5, 8, "/m/é/a.mp4", 2.25, 1.5),
        start_time=T0 + 1.0625,
        finish_time=T0 + 7.5,
        cancel_requested=True,
        result={"probed": 5, "failed": 1, "skipped": 0},
        error=JobError(5, "gone: /m/é"),
        dedup_key="/m/é",
        recoveries=2,
        owner="server-1",
        epoch=7,
    )
    await job_store.insert(job)
    assert await job_store.get("every-field") == job
    # The defaults (None times, no error, unknown ETA, empty result and owner) survive too.
    plain = new_job(1)
    await job_store.insert(plain)
    assert await job_store.get(plain.id) == plain
    assert await job_store.get("no-such-job") is None


async def test_owner_saves_round_trip_running_and_terminal_rows(job_store: JobStore) -> None:
    job = await running(job_store, 1, key="/m")
    assert await job_store.get(job.id) == job
    half = progressed(job, 0.5)
    assert await job_store.save(half)
    assert await job_store.get(job.id) == half
    failed = transition(half, JobState.FAILED, now=T0 + 9, error=JobError(5, "gone"))
    assert await job_store.save(failed)
    assert await job_store.get(job.id) == failed  # a finished job keeps its owner: where it ran


async def test_a_reopened_database_keeps_its_jobs(stores: StoreSet) -> None:
    store = await stores.open()
    job = await running(store, 1)
    await store.insert(new_job(2))
    await stores.close(store)
    store = await stores.open()
    assert await store.get(job.id) == job
    assert await store.get(new_job(2).id) == new_job(2)
    assert await all_ids(store, states=[JobState.PENDING, JobState.RUNNING]) == [new_job(2).id, job.id]
    assert await store.save(progressed(job, 0.5))  # the lease is in the database, not in the connection


async def test_count_by_state_counts_every_stored_job_by_state_and_shards_apart(job_store: JobStore) -> None:
    assert await job_store.count_by_state() == JobCounts()
    await running(job_store, 4)
    for n in (1, 2, 3):
        await job_store.insert(new_job(n))
    failed = dataclasses.replace(new_job(5), state=JobState.FAILED, finish_time=T0 + 1)
    await job_store.insert(failed)
    for n in (6, 7):
        await job_store.insert(new_job(n, parent_id=new_job(4).id))
    counts = await job_store.count_by_state()
    assert counts.jobs == {JobState.PENDING: 3, JobState.RUNNING: 1, JobState.FAILED: 1}
    assert counts.shards == {JobState.PENDING: 2}


# ---- submit: dedup and the queue bound -------------------------------------------------------------------------


async def test_submit_stores_a_new_pending_job(job_store: JobStore) -> None:
    job = new_job(1, key="/m")
    assert await job_store.submit(job, max_pending=10) == (job, False)
    assert await job_store.get(job.id) == job


async def test_submit_dedups_on_a_pending_or_running_job_with_the_same_key(job_store: JobStore) -> None:
    first, _ = await job_store.submit(new_job(1, key="/m"), max_pending=10)
    assert await job_store.submit(new_job(2, key="/m"), max_pending=10) == (first, True)
    assert await job_store.get(new_job(2).id) is None  # nothing stored
    (claimed,) = await job_store.claim("A", [JobKind.SCAN], 1)
    assert await job_store.submit(new_job(3, key="/m"), max_pending=10) == (claimed, True)
    assert await all_ids(job_store) == [first.id]


async def test_a_finished_job_does_not_dedup(job_store: JobStore) -> None:
    job = await running(job_store, 1, key="/m")
    assert await job_store.save(transition(job, JobState.SUCCEEDED, now=T0 + 5))
    second = new_job(2, key="/m")
    assert await job_store.submit(second, max_pending=10) == (second, False)
    await job_store.request_cancel(second.id)  # PENDING -> CANCELLED: terminal, so no longer a duplicate
    third = new_job(3, key="/m")
    assert await job_store.submit(third, max_pending=10) == (third, False)
    assert await all_ids(job_store) == [third.id, second.id, job.id]


async def test_an_empty_key_never_dedups(job_store: JobStore) -> None:
    for n in range(3):
        assert (await job_store.submit(new_job(n, key=""), max_pending=10))[1] is False
    assert len(await all_ids(job_store)) == 3


async def test_queue_bound_counts_pending_jobs_only(job_store: JobStore) -> None:
    for n in range(3):
        await job_store.submit(new_job(n, key=f"/m/{n}"), max_pending=3)
    with pytest.raises(ResourceExhausted):
        await job_store.submit(new_job(3, key="/m/3"), max_pending=3)
    assert await job_store.get(new_job(3).id) is None
    # A dedup hit is not a new job: it is answered even while the queue is full.
    assert await job_store.submit(new_job(4, key="/m/0"), max_pending=3) == (await get(job_store, "job-000"), True)
    await job_store.claim("A", [JobKind.SCAN], 1)  # RUNNING jobs do not count
    assert (await job_store.submit(new_job(5), max_pending=3))[1] is False
    with pytest.raises(ResourceExhausted):
        await job_store.submit(new_job(6), max_pending=3)
    assert await all_ids(job_store) == ["job-005", "job-002", "job-001", "job-000"]


async def test_concurrent_submits_of_one_key_on_one_store_store_one_job(job_store: JobStore) -> None:
    results = await asyncio.gather(*(job_store.submit(new_job(n, key="/m"), max_pending=100) for n in range(20)))
    assert sum(not existed for _, existed in results) == 1
    assert len({job.id for job, _ in results}) == 1
    assert await all_ids(job_store) == [results[0][0].id]


async def test_concurrent_submits_of_one_key_on_two_stores_store_one_job(store_pair: tuple[JobStore, JobStore]) -> None:
    results = await asyncio.gather(
        *(store_pair[n % 2].submit(new_job(n, key="/m"), max_pending=100) for n in range(20))
    )
    assert sum(not existed for _, existed in results) == 1
    assert len({job.id for job, _ in results}) == 1
    assert await all_ids(store_pair[0]) == await all_ids(store_pair[1]) == [results[0][0].id]


async def test_concurrent_submits_on_two_stores_respect_the_queue_bound(store_pair: tuple[JobStore, JobStore]) -> None:
    results = await asyncio.gather(
        *(store_pair[n % 2].submit(new_job(n, key=f"/m/{n}"), max_pending=5) for n in range(20)),
        return_exceptions=True,
    )
    accepted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(accepted) == 5
    assert all(isinstance(r, ResourceExhausted) for r in refused) and len(refused) == 15
    assert sorted(await all_ids(store_pair[0])) == sorted(job.id for job, _ in accepted)


# ---- claims ----------------------------------------------------------------------------------------------------


async def test_claim_takes_the_oldest_pending_jobs_up_to_the_limit(job_store: JobStore) -> None:
    other = await running(job_store, 90, owner="B")
    await job_store.insert(new_job(91, state=JobState.SUCCEEDED, finish_time=T0 + 91))
    for n in range(5):
        await job_store.insert(new_job(n, epoch=3 if n == 1 else 0))
    before = time.time()
    first = await job_store.claim("A", [JobKind.SCAN], 2)
    assert [j.id for j in first] == ["job-000", "job-001"]
    for job in first:
        pending = new_job(int(job.id[-3:]))
        assert job.state is JobState.RUNNING
        assert job.owner == "A"
        assert job.epoch == (4 if job.id == "job-001" else 1)  # a new epoch: one more than the stored one
        assert job.start_time is not None and job.start_time >= before - 1
        assert job.seq > pending.seq
        assert job.progress.stage is Stage.DISCOVERING
        assert await job_store.get(job.id) == job  # returned as stored
    rest = await job_store.claim("A", [JobKind.SCAN], 10)
    assert [j.id for j in rest] == ["job-002", "job-003", "job-004"]
    assert await job_store.claim("A", [JobKind.SCAN], 10) == []
    assert await job_store.get(other.id) == other  # a RUNNING job is not claimed again


async def test_claim_takes_only_the_given_kinds(job_store: JobStore) -> None:
    await job_store.insert(new_job(1))
    assert await job_store.claim("A", [], 10) == []
    assert await job_store.claim("A", [JobKind.SCAN], 0) == []
    # JobKind has one member today; a row of a kind this server does not run stands in for the next one (it is
    # never read back, since this server could not decode it).
    other_kind = cast(JobKind, 99)
    await job_store.insert(new_job(0, kind=other_kind))
    await job_store.insert(new_job(2))
    claimed = await job_store.claim("A", [JobKind.SCAN], 10)
    assert [j.id for j in claimed] == ["job-001", "job-002"]
    assert await job_store.claim("A", [JobKind.SCAN], 10) == []
    assert await all_ids(job_store, kinds=[JobKind.SCAN]) == ["job-002", "job-001"]


async def test_concurrent_claimers_on_two_stores_claim_each_job_exactly_once(
    store_pair: tuple[JobStore, JobStore],
) -> None:
    ids = [new_job(n).id for n in range(50)]
    for n in range(50):
        await store_pair[0].insert(new_job(n))
    got: dict[str, list[str]] = {}

    async def claimer(store: JobStore, owner: str) -> None:
        got[owner] = []
        while batch := await store.claim(owner, [JobKind.SCAN], 3):
            got[owner] += [j.id for j in batch]
            await asyncio.sleep(0)

    await asyncio.gather(*(claimer(store_pair[i % 2], f"owner-{i}") for i in range(5)))
    claimed = [job_id for owned in got.values() for job_id in owned]
    assert sorted(claimed) == ids  # every job once: none twice, none left
    assert sum(1 for owned in got.values() if owned) >= 2  # they did compete
    for owner, owned in got.items():
        for job_id in owned:
            job = await get(store_pair[1], job_id)
            assert (job.state, job.owner, job.epoch) == (JobState.RUNNING, owner, 1)


# ---- fenced owner writes ---------------------------------------------------------------------------------------


async def test_the_owners_writes_are_applied(job_store: JobStore) -> None:
    job = await running(job_store, 1)
    cp = progressed(job, 0.3)
    assert await job_store.checkpoint(cp)
    assert await job_store.get(job.id) == cp
    same_seq = dataclasses.replace(cp, progress=dataclasses.replace(cp.progress, current_item="/media/x.mp4"))
    assert await job_store.checkpoint(same_seq)  # at least as new: applied
    assert await job_store.get(job.id) == same_seq
    saved = progressed(same_seq, 0.6)
    assert await job_store.save(saved)
    assert await job_store.get(job.id) == saved


async def test_writes_by_another_owner_change_nothing(store_pair: tuple[JobStore, JobStore]) -> None:
    owner_store, other_store = store_pair
    job = await running(owner_store, 1, owner="A")
    await other_store.register_owner(Owner("B"), LONG_TTL_S)  # a live peer: refused for not owning the job
    for store in store_pair:
        intruder = progressed(job, 0.5, owner="B")
        assert not await store.save(intruder)
        assert not await store.checkpoint(intruder)
        assert not await store.save(transition(intruder, JobState.SUCCEEDED, now=T0 + 5))
        assert not await store.save(progressed(job, 0.5, owner=""))
        assert await other_store.get(job.id) == job


async def test_a_stale_epoch_of_the_same_owner_changes_nothing(store_pair: tuple[JobStore, JobStore]) -> None:
    store, peer = store_pair
    await store.register_owner(Owner("A"), LONG_TTL_S)
    first = await running(store, 1, owner="A")
    await store.release_owner("A")
    (recovered,) = await peer.recover_expired()
    assert (recovered.state, recovered.owner) == (JobState.PENDING, "")
    await store.register_owner(Owner("A"), LONG_TTL_S)
    (second,) = await store.claim("A", [JobKind.SCAN], 1)
    assert (second.owner, second.epoch) == ("A", first.epoch + 1)
    stale = progressed(first, 0.9, seq_step=10 * RECOVERY_SEQ_GAP)  # even with a far newer seq
    assert not await store.save(stale)
    assert not await store.checkpoint(stale)
    assert not await store.save(transition(stale, JobState.SUCCEEDED, now=T0 + 5))
    assert await peer.get(first.id) == second
    assert await store.save(progressed(second, 0.1))  # the current epoch still writes


async def test_a_finished_job_cannot_be_resurrected(job_store: JobStore) -> None:
    job = await running(job_store, 1)
    newer = progressed(job, 0.8, seq_step=5)
    assert await job_store.checkpoint(newer)
    older = progressed(job, 0.3, seq_step=2)
    assert not await job_store.checkpoint(older)  # lands late: ignored
    assert await job_store.get(job.id) == newer
    done = transition(newer, JobState.SUCCEEDED, now=T0 + 5)
    assert await job_store.save(done)
    assert not await job_store.checkpoint(dataclasses.replace(newer, seq=done.seq + 1))
    assert not await job_store.save(dataclasses.replace(newer, seq=done.seq + 2))
    assert not await job_store.save(dataclasses.replace(done, seq=done.seq + 3))  # not even a second ending
    assert await job_store.get(job.id) == done


async def test_checkpoint_is_only_for_running_snapshots(job_store: JobStore) -> None:
    job = await running(job_store, 1)
    assert not await job_store.checkpoint(transition(progressed(job, 0.5), JobState.SUCCEEDED, now=T0 + 5))
    assert not await job_store.checkpoint(requeue_interrupted(progressed(job, 0.5), now=T0 + 5, crashed=False))
    assert await job_store.get(job.id) == job


async def test_saving_a_requeue_hands_the_job_back_without_an_owner(job_store: JobStore) -> None:
    job = await running(job_store, 1, key="/m")
    requeued = requeue_interrupted(progressed(job, 0.5), now=T0 + 5, crashed=False)
    assert requeued.owner == "A"  # the fence needs it
    assert await job_store.save(requeued)
    stored = await get(job_store, job.id)
    assert stored == dataclasses.replace(requeued, owner="")  # the epoch stays: it only ever grows
    assert not await job_store.save(progressed(job, 0.6))  # the old claim is over
    assert await job_store.submit(new_job(2, key="/m"), max_pending=10) == (stored, True)  # still queued
    (again,) = await job_store.claim("A", [JobKind.SCAN], 1)
    assert (again.id, again.owner, again.epoch) == (job.id, "A", job.epoch + 1)
    assert not await job_store.save(progressed(job, 0.7))  # same owner, previous claim: refused


# ---- the cancel flag -------------------------------------------------------------------------------------------


async def test_cancelling_a_pending_job_ends_it_at_once(job_store: JobStore) -> None:
    job = new_job(1, key="/m")
    await job_store.submit(job, max_pending=10)
    cancelled = await job_store.request_cancel(job.id)
    assert cancelled is not None
    assert (cancelled.state, cancelled.cancel_requested) == (JobState.CANCELLED, True)
    assert cancelled.finish_time is not None and cancelled.seq > job.seq
    assert await job_store.get(job.id) == cancelled
    assert await job_store.claim("A", [JobKind.SCAN], 10) == []


async def test_the_cancel_flag_survives_the_owners_writes(store_pair: tuple[JobStore, JobStore]) -> None:
    owner_store, other = store_pair
    job = await running(owner_store, 1)
    flagged = await other.request_cancel(job.id)
    assert flagged == dataclasses.replace(job, cancel_requested=True)
    assert await owner_store.get(job.id) == flagged
    snapshot = progressed(job, 0.4)  # the owner's snapshot predates the request: its flag is False
    assert not snapshot.cancel_requested
    assert await owner_store.checkpoint(snapshot)
    assert await owner_store.get(job.id) == dataclasses.replace(snapshot, cancel_requested=True)
    snapshot = progressed(snapshot, 0.5)
    assert await owner_store.save(snapshot)
    assert await owner_store.get(job.id) == dataclasses.replace(snapshot, cancel_requested=True)
    assert await other.request_cancel(job.id) == dataclasses.replace(snapshot, cancel_requested=True)  # again: same
    done = transition(snapshot, JobState.CANCELLED, now=T0 + 5)
    assert await owner_store.save(done)
    assert await other.get(job.id) == dataclasses.replace(done, cancel_requested=True)


async def test_cancelling_a_finished_or_unknown_job_changes_nothing(job_store: JobStore) -> None:
    job = await running(job_store, 1)
    done = transition(job, JobState.SUCCEEDED, now=T0 + 5)
    assert await job_store.save(done)
    assert await job_store.request_cancel(job.id) == done
    assert await job_store.get(job.id) == done
    assert await job_store.request_cancel("no-such-job") is None


# ---- leases and recovery ---------------------------------------------------------------------------------------


async def test_a_lease_lives_while_renewed_and_ends_when_not(job_store: JobStore) -> None:
    await job_store.register_owner(Owner("A", "127.0.0.1:50051", 1234), 2 * SHORT_TTL_S)
    assert await job_store.renew_lease("A", LONG_TTL_S)
    await asyncio.sleep(EXPIRE_S)  # past the first TTL: only the renewal keeps it alive
    await job_store.insert(new_job(1))
    (job,) = await job_store.claim("A", [JobKind.SCAN], 1)
    assert await job_store.recover_expired() == []
    assert await job_store.checkpoint(progressed(job, 0.5))
    assert await job_store.renew_lease("A", SHORT_TTL_S)
    await asyncio.sleep(EXPIRE_S)
    assert not await job_store.renew_lease("A", LONG_TTL_S)  # too late: it does not come back
    assert not await job_store.renew_lease("A", LONG_TTL_S)
    assert not await job_store.renew_lease("never-registered", LONG_TTL_S)
    (recovered,) = await job_store.recover_expired()
    assert recovered.id == job.id and recovered.state is JobState.PENDING


async def test_recovery_applies_the_crash_rules(store_pair: tuple[JobStore, JobStore]) -> None:
    store, peer = store_pair
    await store.register_owner(Owner("dying"), LONG_TTL_S)
    for n in range(3):
        await store.insert(new_job(n, key=f"/m/{n}", recoveries=MAX_CRASH_RECOVERIES - 1 if n == 2 else 0))
    claimed = await store.claim("dying", [JobKind.SCAN], 3)
    before = {job.id: progressed(job, 0.4) for job in claimed}
    for job in before.values():
        assert await store.checkpoint(job)
    await store.request_cancel("job-001")
    assert await store.renew_lease("dying", SHORT_TTL_S)  # its last heartbeat
    await asyncio.sleep(EXPIRE_S)
    started = time.time()
    recovered = {job.id: job for job in await peer.recover_expired()}
    assert sorted(recovered) == ["job-000", "job-001", "job-002"]
    for job_id, job in recovered.items():
        assert await peer.get(job_id) == job  # returned as stored
        assert job.seq >= before[job_id].seq + RECOVERY_SEQ_GAP
        assert job.update_time >= started - 1

    requeued = recovered["job-000"]
    assert (requeued.state, requeued.owner, requeued.recoveries) == (JobState.PENDING, "", 1)
    assert requeued.progress == Progress(fraction=0.4, stage=Stage.QUEUED)  # never backwards; counts restart
    assert requeued.start_time is None and requeued.finish_time is None and requeued.error is None

    cancelled = recovered["job-001"]
    assert (cancelled.state, cancelled.cancel_requested, cancelled.recoveries) == (JobState.CANCELLED, True, 0)
    assert cancelled.finish_time is not None

    failed = recovered["job-002"]
    assert failed.state is JobState.FAILED and failed.finish_time is not None
    assert failed.error is not None and failed.error.code == ABORTED
    assert "not run again" in failed.error.message

    assert await peer.recover_expired() == []  # once
    assert not await store.renew_lease("dying", LONG_TTL_S)
    assert not await store.save(progressed(before["job-000"], 0.5))  # the dead owner's late write
    assert await peer.get("job-000") == requeued
    (again,) = await peer.claim("B", [JobKind.SCAN], 10)
    assert (again.id, again.owner, again.epoch) == ("job-000", "B", 2)


async def test_a_live_owners_jobs_are_never_recovered(store_pair: tuple[JobStore, JobStore]) -> None:
    store, peer = store_pair
    await store.register_owner(Owner("live"), LONG_TTL_S)
    await peer.register_owner(Owner("dead"), LONG_TTL_S)
    live = await running(store, 1, owner="live")
    dead = await running(peer, 2, owner="dead")
    assert await peer.renew_lease("dead", SHORT_TTL_S)
    await asyncio.sleep(EXPIRE_S)
    assert [j.id for j in await store.recover_expired()] == [dead.id]
    assert await peer.recover_expired() == []
    for recoverer in (store, peer):
        assert await recoverer.get(live.id) == live
    assert (await get(store, dead.id)).state is JobState.PENDING
    assert await store.renew_lease("live", LONG_TTL_S)


async def test_an_owner_whose_lease_lapsed_writes_nothing(store_pair: tuple[JobStore, JobStore]) -> None:
    store, peer = store_pair
    job = await running(store, 1, owner="A")
    assert await store.checkpoint(progressed(job, 0.2))
    stored = await get(store, job.id)
    assert await store.renew_lease("A", SHORT_TTL_S)
    await asyncio.sleep(EXPIRE_S)
    # Not recovered yet, but recovery may hand the job to someone else at any moment: the claim is no longer safe.
    assert not await store.checkpoint(progressed(stored, 0.4))
    assert not await store.save(progressed(stored, 0.5))
    assert not await store.save(transition(stored, JobState.SUCCEEDED, now=T0 + 5))
    assert await peer.get(job.id) == stored
    (recovered,) = await peer.recover_expired()
    assert recovered.state is JobState.PENDING


async def test_a_running_job_of_an_unknown_owner_is_recovered(job_store: JobStore) -> None:
    await job_store.register_owner(Owner("live"), LONG_TTL_S)
    ghost = dataclasses.replace(new_job(1), state=JobState.RUNNING, owner="ghost", epoch=1, start_time=T0 + 1)
    ownerless = dataclasses.replace(new_job(2), state=JobState.RUNNING, owner="", epoch=1, start_time=T0 + 2)
    await job_store.insert(ghost)
    await job_store.insert(ownerless)
    live = await running(job_store, 3, owner="live")
    recovered = await job_store.recover_expired()
    assert sorted(j.id for j in recovered) == [ghost.id, ownerless.id]
    assert all((j.state, j.owner, j.recoveries) == (JobState.PENDING, "", 1) for j in recovered)
    assert await job_store.get(live.id) == live


async def test_releasing_an_owner_ends_its_lease_at_once(store_pair: tuple[JobStore, JobStore]) -> None:
    store, peer = store_pair
    await store.register_owner(Owner("A"), LONG_TTL_S)
    await store.register_owner(Owner("B"), LONG_TTL_S)
    job = await running(store, 1, owner="A")
    other = await running(store, 2, owner="B")
    await store.release_owner("A")
    assert not await store.renew_lease("A", LONG_TTL_S)
    assert [j.id for j in await peer.recover_expired()] == [job.id]
    assert await peer.get(other.id) == other
    assert await peer.renew_lease("B", LONG_TTL_S)


async def test_sqlite_take_over_expires_every_previous_owner(stores: StoreSet) -> None:
    if stores.name != "sqlite":
        pytest.skip("take_over is how a SQLite server (the only one on its file) inherits a dead one's jobs")
    old = await stores.open()
    await old.register_owner(Owner("old-server", "127.0.0.1:1", 1), LONG_TTL_S)
    job = await running(old, 1, owner="old-server")
    new = await stores.open(take_over=True)
    (recovered,) = await new.recover_expired()
    assert (recovered.id, recovered.state, recovered.owner) == (job.id, JobState.PENDING, "")
    assert not await old.renew_lease("old-server", LONG_TTL_S)
    assert not await old.save(progressed(job, 0.5))


# ---- the change feed -------------------------------------------------------------------------------------------


async def test_every_committed_change_emits_one_event(job_store: JobStore) -> None:
    s = job_store
    rec = Recorder()
    s.changes.subscribe(rec)

    async def one_event_of(action: Awaitable[Any], job_id: str) -> None:
        assert await rec.during(action) == [ChangeEvent.of(await get(s, job_id))]

    assert await rec.during(s.register_owner(Owner("A"), LONG_TTL_S)) == []  # leases are not job changes
    await one_event_of(s.insert(new_job(1)), "job-001")
    await one_event_of(s.submit(new_job(2, key="/m"), max_pending=10), "job-002")
    claimed = await s.claim("A", [JobKind.SCAN], 2)
    assert rec.events[-2:] == [ChangeEvent.of(await get(s, "job-001")), ChangeEvent.of(await get(s, "job-002"))]
    assert len(rec.events) == 4
    one, two = claimed
    one = progressed(one, 0.5)
    await one_event_of(s.checkpoint(one), one.id)
    await one_event_of(s.save(transition(one, JobState.SUCCEEDED, now=T0 + 5)), one.id)
    await one_event_of(s.request_cancel(two.id), two.id)
    assert rec.events[-1].cancel_requested
    await one_event_of(s.checkpoint(progressed(two, 0.2)), two.id)  # the event tells the stored flag
    assert rec.events[-1].cancel_requested
    await one_event_of(s.save(progressed(two, 0.3, seq_step=2)), two.id)
    await s.insert(new_job(3))
    await one_event_of(s.request_cancel("job-003"), "job-003")
    await s.release_owner("A")
    recovered = await rec.during(s.recover_expired())
    assert recovered == [ChangeEvent.of(await get(s, two.id))] and recovered[0].state is JobState.CANCELLED
    last = await get(s, one.id)
    assert await rec.during(s.delete(one.id)) == [ChangeEvent.of(last, deleted=True)]

    seqs: dict[str, list[int]] = {}
    for event in rec.events:
        seqs.setdefault(event.job_id, []).append(event.seq)
    assert all(seq == sorted(seq) for seq in seqs.values()), seqs  # in order per job
    assert rec.resyncs == 0


async def test_events_come_after_the_commit(stores: StoreSet) -> None:
    s = await stores.open()
    rec = Recorder(stores.database.committed)
    s.changes.subscribe(rec)
    await s.register_owner(Owner("A"), LONG_TTL_S)
    await s.submit(new_job(1, key="/m"), max_pending=10)
    await s.insert(new_job(2))
    job, _ = await s.claim("A", [JobKind.SCAN], 2)
    await s.checkpoint(progressed(job, 0.5))
    await s.request_cancel(job.id)
    await s.save(progressed(job, 0.6, seq_step=2))
    await s.renew_lease("A", SHORT_TTL_S)
    await asyncio.sleep(EXPIRE_S)
    assert len(await s.recover_expired()) == 2
    await s.delete(job.id)
    assert len(rec.events) == 10
    for event, committed in zip(rec.events, rec.seen_committed, strict=True):
        expected = None if event.deleted else (event.seq, event.state, event.cancel_requested)
        assert committed == expected, event
    last = [e for e in rec.events[:-1] if e.job_id == job.id][-1]
    assert (last.state, last.cancel_requested) == (JobState.CANCELLED, True)
    assert rec.events[-1] == dataclasses.replace(last, deleted=True)


async def test_refused_writes_emit_nothing(job_store: JobStore) -> None:
    s = job_store
    await s.register_owner(Owner("B"), LONG_TTL_S)
    job = await running(s, 1, key="/m")
    await s.checkpoint(progressed(job, 0.5, seq_step=5))
    done_job = await running(s, 2)
    await s.save(transition(done_job, JobState.SUCCEEDED, now=T0 + 5))
    await s.submit(new_job(3), max_pending=10)
    rec = Recorder()
    s.changes.subscribe(rec)
    refused: list[Callable[[], Awaitable[Any]]] = [
        lambda: s.save(progressed(job, 0.6, owner="B")),  # fenced: another owner
        lambda: s.checkpoint(progressed(job, 0.6, owner="B")),
        lambda: s.save(progressed(job, 0.6, epoch=job.epoch + 1)),  # fenced: another epoch
        lambda: s.checkpoint(progressed(job, 0.4, seq_step=2)),  # older than the stored checkpoint
        lambda: s.save(progressed(done_job, 0.5)),  # after the end
        lambda: s.submit(new_job(4, key="/m"), max_pending=10),  # dedup hit
        lambda: s.request_cancel(done_job.id),  # already final
        lambda: s.request_cancel("no-such-job"),
        lambda: s.delete(job.id),  # not terminal
        lambda: s.delete(new_job(3).id),
        lambda: s.delete("no-such-job"),
        lambda: s.recover_expired(),  # nothing expired
        lambda: s.claim("A", [JobKind.SCAN], 0),
    ]
    for action in refused:
        assert await rec.during(action()) == []
    with pytest.raises(ResourceExhausted):
        await rec.during(s.submit(new_job(5), max_pending=1))  # queue full
    assert rec.events == []
    await s.request_cancel(job.id)
    assert await rec.during(s.request_cancel(job.id)) == []  # the flag was already set
    s.changes.unsubscribe(rec)
    await s.insert(new_job(6))
    assert len(rec.events) == 1


async def test_a_failing_listener_does_not_fail_the_write(job_store: JobStore) -> None:
    class Broken(Recorder):
        def job_changed(self, event: ChangeEvent) -> None:
            raise RuntimeError("listener bug")

    good = Recorder()
    job_store.changes.subscribe(Broken())
    job_store.changes.subscribe(good)
    assert (await job_store.submit(new_job(1), max_pending=10))[1] is False
    assert await job_store.get(new_job(1).id) == new_job(1)
    assert good.events == [ChangeEvent.of(new_job(1))]


# ---- listing, retention, deletion ------------------------------------------------------------------------------


async def test_list_page_is_newest_first_and_filters(job_store: JobStore) -> None:
    s = job_store
    for n in range(6):
        await s.insert(new_job(n))
    await s.claim("A", [JobKind.SCAN], 2)  # 0, 1 RUNNING
    await s.request_cancel("job-002")  # CANCELLED
    assert await all_ids(s) == [f"job-{n:03d}" for n in reversed(range(6))]
    assert await all_ids(s, states=[JobState.PENDING]) == ["job-005", "job-004", "job-003"]
    assert await all_ids(s, states=[JobState.RUNNING, JobState.CANCELLED]) == ["job-002", "job-001", "job-000"]
    assert await all_ids(s, states=[JobState.SUCCEEDED]) == []
    assert await all_ids(s, kinds=[JobKind.SCAN], states=[JobState.RUNNING]) == ["job-001", "job-000"]


async def test_page_tokens_walk_every_job_once(job_store: JobStore) -> None:
    s = job_store
    for n in range(23):
        await s.insert(new_job(n, state=JobState.SUCCEEDED if n % 3 == 0 else JobState.PENDING))

    async def walk(page_size: int, states: list[JobState], *, during: Callable[[int], Awaitable[None]]) -> list[str]:
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            jobs, token = await s.list_page(states=states, kinds=[], page_size=page_size, page_token=token)
            assert len(jobs) <= page_size
            seen += [j.id for j in jobs]
            pages += 1
            if not token:
                return seen
            assert len(jobs) == page_size
            await during(pages)

    async def nothing(_: int) -> None:
        pass

    everything = await all_ids(s)
    assert await walk(5, [], during=nothing) == everything
    assert await walk(23, [], during=nothing) == everything  # a full last page has no next token
    assert await walk(1, [], during=nothing) == everything
    pending = await all_ids(s, states=[JobState.PENDING])
    assert len(pending) == 15
    assert await walk(4, [JobState.PENDING], during=nothing) == pending

    async def insert_newer(page: int) -> None:  # jobs that arrive mid-walk are newer: no repeat, no gap
        await s.insert(new_job(100 + page))

    assert await walk(5, [], during=insert_newer) == everything
    assert len(await all_ids(s)) == 23 + 4


async def test_bad_page_tokens_and_sizes_are_invalid_arguments(job_store: JobStore) -> None:
    for n in range(3):
        await job_store.insert(new_job(n))
    _, token = await job_store.list_page(states=[], kinds=[], page_size=1, page_token="")
    assert token
    for bad in ("not a token!", "AAAA", page_token.encode([1], "0" * 16), token[:-3]):
        with pytest.raises(InvalidArgument):
            await job_store.list_page(states=[], kinds=[], page_size=1, page_token=bad)
    with pytest.raises(InvalidArgument):  # issued for other filters
        await job_store.list_page(states=[JobState.PENDING], kinds=[], page_size=1, page_token=token)
    for size in (0, -1):
        with pytest.raises(InvalidArgument):
            await job_store.list_page(states=[], kinds=[], page_size=size, page_token="")
    jobs, _ = await job_store.list_page(states=[], kinds=[], page_size=5, page_token=token)
    assert [j.id for j in jobs] == ["job-001", "job-000"]  # the good token still works


async def test_list_finished_before_is_oldest_first_and_terminal_only(job_store: JobStore) -> None:
    s = job_store
    finished = {1: 30.0, 2: 10.0, 3: 20.0, 4: 40.0}
    for n, at in finished.items():
        await s.insert(new_job(n, state=JobState.SUCCEEDED, finish_time=T0 + at))
    # Not finished, though it has a finish time (insert stores any row as given): not for retention.
    await s.insert(new_job(5, state=JobState.RUNNING, owner="A", epoch=1, start_time=T0, finish_time=T0 + 5))
    await s.insert(new_job(6))
    cancelled = await s.request_cancel("job-006")  # finishes now, after the cutoffs below
    assert cancelled is not None and cancelled.finish_time is not None
    assert [j.id for j in await s.list_finished_before(T0 + 35, 10)] == ["job-002", "job-003", "job-001"]
    assert [j.id for j in await s.list_finished_before(T0 + 35, 2)] == ["job-002", "job-003"]
    assert [j.id for j in await s.list_finished_before(T0 + 30, 10)] == ["job-002", "job-003"]  # strictly before
    assert await s.list_finished_before(T0, 10) == []
    assert await s.list_finished_before(cancelled.finish_time + 1, 10) == [
        await get(s, f"job-00{n}") for n in (2, 3, 1, 4, 6)
    ]


async def test_delete_removes_finished_jobs_only(job_store: JobStore) -> None:
    s = job_store
    run = await running(s, 1)
    await s.insert(new_job(2))
    await s.insert(new_job(3, state=JobState.FAILED, finish_time=T0 + 3, error=JobError(13, "boom")))
    for job_id in (run.id, "job-002", "no-such-job"):
        assert not await s.delete(job_id)
    assert await s.delete("job-003")
    assert await s.get("job-003") is None
    assert not await s.delete("job-003")
    assert await s.save(transition(run, JobState.SUCCEEDED, now=T0 + 5))
    assert await s.delete(run.id)
    assert await all_ids(s) == ["job-002"]


# ---- children (shards of a big scan) ---------------------------------------------------------------------------


def child_of(parent: Job, i: int) -> Job:
    return new_job(500 + i, parent_id=parent.id, spec={**parent.spec, "shard_index": i})


async def test_spawned_children_are_pending_jobs_of_their_parent_with_their_payloads(job_store: JobStore) -> None:
    parent = await running(job_store, 1)
    # a payload keeps a file name that is not UTF-8 (surrogate escapes) exactly as it came
    payloads = [{"files": [["bad-\udcff.mp4", 1, 2, 0]]}, {"files": [["ok.mp4", 3, 4, 1]]}]
    children = [child_of(parent, i) for i in range(2)]
    spawned = await job_store.spawn_children(parent, {"plan": 1}, list(zip(children, payloads, strict=True)))
    assert spawned is not None and [c.id for c in spawned] == [c.id for c in children]
    listed = await job_store.list_children(parent.id)
    assert [(c.id, c.state, c.parent_id) for c in listed] == [(c.id, JobState.PENDING, parent.id) for c in children]
    assert await job_store.get_payload(parent.id) == {"plan": 1}
    assert [await job_store.get_payload(c.id) for c in children] == payloads
    assert await job_store.get_payload("job-999") is None
    # children are claimed like any job (one of a parent per owner at a time: the next test)
    claimed = await job_store.claim("A", [JobKind.SCAN], 5) + await job_store.claim("B", [JobKind.SCAN], 5)
    assert [c.id for c in claimed] == [c.id for c in children] and all(c.parent_id == parent.id for c in claimed)


async def test_an_owner_runs_one_shard_of_a_parent_at_a_time_and_the_others_go_to_other_owners(
    job_store: JobStore,
) -> None:
    parent = await running(job_store, 1)
    children = [child_of(parent, i) for i in range(3)]
    await job_store.spawn_children(parent, {}, [(c, {}) for c in children])
    await job_store.insert(new_job(2))  # a job of its own, queued after the shards
    # A has room for 5 jobs: it takes the oldest shard and the job of its own, and leaves the other shards
    first = await job_store.claim("A", [JobKind.SCAN], 5)
    assert [j.id for j in first] == [children[0].id, "job-002"]
    assert await job_store.claim("A", [JobKind.SCAN], 5) == []
    (second,) = await job_store.claim("B", [JobKind.SCAN], 5)  # another server takes the next one
    assert second.id == children[1].id
    # A's shard ends: A may take the next shard of the parent
    assert await job_store.save(transition(first[0], JobState.SUCCEEDED, now=T0 + 5))
    (third,) = await job_store.claim("A", [JobKind.SCAN], 5)
    assert third.id == children[2].id


async def test_spawning_is_idempotent_and_fenced_on_the_parents_owner(job_store: JobStore) -> None:
    parent = await running(job_store, 1)
    other = await running(job_store, 2)
    first = await job_store.spawn_children(parent, {"run": 1}, [(child_of(parent, 0), {"n": 0})])
    again = await job_store.spawn_children(
        parent, {"run": 2}, [(child_of(parent, 5), {"n": 5}), (child_of(parent, 6), {"n": 6})]
    )
    assert first is not None and again is not None and [c.id for c in again] == [c.id for c in first]
    assert await job_store.get_payload(parent.id) == {"run": 1}  # the first plan stands: a successor adopts it
    assert await job_store.get_payload(child_of(parent, 5).id) is None
    stale = dataclasses.replace(parent, epoch=parent.epoch - 1)
    assert await job_store.spawn_children(stale, {}, [(child_of(stale, 1), {})]) is None
    assert await job_store.spawn_children(dataclasses.replace(other, owner="B"), {}, [(child_of(other, 1), {})]) is None
    assert await job_store.list_children(other.id) == []


async def test_children_are_listed_by_parent_only_and_outside_the_queue_bound(job_store: JobStore) -> None:
    parent = await running(job_store, 1)
    await job_store.spawn_children(parent, {}, [(child_of(parent, i), {}) for i in range(3)])
    assert await all_ids(job_store) == [parent.id]
    children, token = await job_store.list_page(states=(), kinds=(), page_size=2, page_token="", parent_id=parent.id)
    rest, last = await job_store.list_page(states=(), kinds=(), page_size=2, page_token=token, parent_id=parent.id)
    assert [c.id for c in children + rest] == [child_of(parent, i).id for i in (2, 1, 0)] and last == ""
    with pytest.raises(InvalidArgument):  # a token names its filters, the parent included
        await job_store.list_page(states=(), kinds=(), page_size=2, page_token=token)
    # three pending children, and a bound of one: a new job of its own is still accepted
    _, existed = await job_store.submit(new_job(2), max_pending=1)
    assert not existed


async def test_cancelling_a_parent_cancels_its_active_children_in_the_same_step(job_store: JobStore) -> None:
    parent = await running(job_store, 1)
    children = [child_of(parent, i) for i in range(3)]
    await job_store.spawn_children(parent, {}, [(c, {}) for c in children])
    (first,) = await job_store.claim("A", [JobKind.SCAN], 1)
    assert first.id == children[0].id
    cancelled = await job_store.request_cancel(parent.id)
    assert cancelled is not None and cancelled.cancel_requested and cancelled.state is JobState.RUNNING
    states = {c.id: (c.state, c.cancel_requested) for c in await job_store.list_children(parent.id)}
    assert states == {
        children[0].id: (JobState.RUNNING, True),  # its owner hears of it and stops it
        children[1].id: (JobState.CANCELLED, True),
        children[2].id: (JobState.CANCELLED, True),
    }


async def test_deleting_a_parent_deletes_its_children_and_payloads_and_retention_skips_children(
    job_store: JobStore,
) -> None:
    parent = await running(job_store, 1)
    children = [child_of(parent, i) for i in range(2)]
    await job_store.spawn_children(parent, {"p": 1}, [(c, {"c": 1}) for c in children])
    for child in await job_store.claim("A", [JobKind.SCAN], 2):
        assert await job_store.save(transition(child, JobState.SUCCEEDED, now=T0 + 10))
    assert await job_store.save(transition(parent, JobState.SUCCEEDED, now=T0 + 20))
    finished = await job_store.list_finished_before(time.time() + 3600, 100)
    assert [j.id for j in finished] == [parent.id]  # children go with their parent, never on their own
    assert await job_store.delete(parent.id)
    assert await job_store.list_children(parent.id) == []
    assert [await job_store.get(c.id) for c in children] == [None, None]
    assert [await job_store.get_payload(i) for i in (parent.id, children[0].id)] == [None, None]
