"""The job engine: one server's view of the jobs in the store, and the API the servicers call.

The store owns the jobs (store.py): pending jobs, deduplication, the queue bound, ownership and cancellation live
there, so several engines on one store behave as replicas. This module wires the parts, each in its own module:
- admission.py: a request becomes a PENDING job (validation; dedup and the bound are the store's);
- runner.py: claims pending jobs while there are free slots, runs their handlers, stores how they ended;
- progress.py: running jobs' snapshots to watchers (throttled) and checkpoints to the store;
- lease.py: this server's lease (heartbeats; when it cannot be proven, the runner stops its jobs);
- recovery.py: crash rules for the jobs of servers whose lease expired;
- retention.py: pruning of old finished jobs;
- hub.py: coalescing fan-out of snapshots to watchers and waiters.
The engine also listens to the store's change feed: a job that runs elsewhere (or waits in the queue) is read
from the store when it changes, so GetJob, WaitJob and WatchJob work for any job on any server; a slow poll is the
floor under lost signals. A job running here is served from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Collection, Mapping
from typing import Any

from reelscan.service.errors import FailedPrecondition, NotFound, Unavailable
from reelscan.service.jobs.admission import Admission
from reelscan.service.jobs.background import BackgroundTasks
from reelscan.service.jobs.feed import ChangeEvent
from reelscan.service.jobs.handler import JobHandler
from reelscan.service.jobs.hub import Subscription, WatchHub
from reelscan.service.jobs.lease import LeaseKeeper, new_owner_id
from reelscan.service.jobs.model import MAX_CRASH_RECOVERIES, Job, JobCounts, JobKind, JobState
from reelscan.service.jobs.recovery import Recovery
from reelscan.service.jobs.retention import Retention
from reelscan.service.jobs.runner import JobRunner
from reelscan.service.jobs.store import JobStore, Owner
from reelscan.service.telemetry.events import NO_TELEMETRY, Telemetry

__all__ = ["MAX_CRASH_RECOVERIES", "EngineClosed", "JobEngine"]

log = logging.getLogger(__name__)
FINISHED_CACHE_SIZE = 1024
REMOTE_CACHE_SIZE = 1024


class EngineClosed(Unavailable):
    """The engine is shutting down; the API answers UNAVAILABLE so clients retry against the restarted server."""


class JobEngine:
    def __init__(
        self,
        store: JobStore,
        *,
        max_concurrent: int,
        max_queued: int,
        default_timeout_s: float,
        retention_s: float,
        max_watchers: int,
        publish_interval_s: float = 0.1,
        checkpoint_interval_s: float = 1.0,
        prune_interval_s: float | None = None,
        lease_ttl_s: float = 10.0,
        heartbeat_interval_s: float | None = None,
        recovery_interval_s: float | None = None,
        poll_interval_s: float = 1.0,
        address: str = "",
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        for name, value in (
            ("max_concurrent", max_concurrent),
            ("max_queued", max_queued),
            ("default_timeout_s", default_timeout_s),
            ("retention_s", retention_s),
            ("max_watchers", max_watchers),
            ("lease_ttl_s", lease_ttl_s),
            ("poll_interval_s", poll_interval_s),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self._store = store
        self._telemetry = telemetry
        self._handlers: dict[JobKind, JobHandler] = {}
        self._hub = WatchHub(max_watchers, telemetry)
        self._background = BackgroundTasks()
        self.lease = LeaseKeeper(
            store,
            Owner(new_owner_id(), address, os.getpid()),
            ttl_s=lease_ttl_s,
            interval_s=heartbeat_interval_s if heartbeat_interval_s is not None else lease_ttl_s / 3,
            on_lost=self._lease_lost,
        )
        self._runner = JobRunner(
            store,
            self._hub,
            self._handlers,
            self.lease,
            self._background,
            max_concurrent=max_concurrent,
            publish_interval_s=publish_interval_s,
            checkpoint_interval_s=checkpoint_interval_s,
            telemetry=telemetry,
        )
        self._admission = Admission(
            store, self._handlers.keys(), default_timeout_s=default_timeout_s, max_queued=max_queued
        )
        self._recovery = Recovery(
            store,
            self._handlers,
            interval_s=recovery_interval_s if recovery_interval_s is not None else lease_ttl_s / 2,
            telemetry=telemetry,
        )
        self._retention = Retention(
            store,
            self._handlers,
            retention_s=retention_s,
            interval_s=prune_interval_s,
            on_deleted=self._forget,
            telemetry=telemetry,
        )
        self._poll_interval_s = poll_interval_s
        # Recently read terminal jobs: GetJob/WaitJob on a finished job skip the store (a thread hop per call).
        self._finished: OrderedDict[str, Job] = OrderedDict()
        # Active jobs running elsewhere, as last read: served until a change signal arrives for them, for at most a
        # poll interval (the floor under lost signals), so polling GetJob on any replica costs no database read.
        self._remote: OrderedDict[str, tuple[float, Job]] = OrderedDict()
        self._signals = 0  # change signals received; a read that overlapped one is not cached
        self._refreshing: set[str] = set()
        self._refresh_again: set[str] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._started = False
        self._closed = False

    @property
    def owner(self) -> Owner:
        """This server's current identity in the store."""
        return self.lease.owner

    @property
    def address(self) -> str:
        return self.lease.owner.address

    @address.setter
    def address(self, value: str) -> None:
        if self._started:
            raise RuntimeError("set the address before start()")
        self.lease.set_address(value)

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def register(self, kind: JobKind, handler: JobHandler) -> None:
        if self._started:
            raise RuntimeError("register job handlers before start()")
        self._handlers[kind] = handler

    async def start(self) -> None:
        """Takes a lease, recovers the jobs of dead servers, then claims pending jobs and keeps things tidy."""
        if self._started:
            raise RuntimeError("engine already started")
        self._store.changes.subscribe(self)
        await self.lease.start()
        await self._recovery.recover_once()
        self._started = True
        self._loops = [
            asyncio.create_task(self._retention.run(), name="reelscan-job-pruner"),
            asyncio.create_task(self._recovery.run(), name="reelscan-job-recovery"),
            asyncio.create_task(self._poll(), name="reelscan-job-poll"),
        ]
        self._runner.open()

    async def close(self) -> None:
        """Hands running jobs back (PENDING), ends watch streams and gives up the lease. The store stays open:
        whoever opened it closes it."""
        if self._closed:
            return
        self._closed = True
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._runner.close()
        self._store.changes.unsubscribe(self)
        self._hub.close()
        await self._background.drain()
        if self._started:
            await self.lease.close(release=True)

    # ---- API -------------------------------------------------------------------------------------------------

    async def submit(
        self,
        kind: JobKind,
        spec: Mapping[str, Any],
        *,
        timeout_s: float | None,
        dedup_key: str = "",
        peer: str = "",
    ) -> tuple[Job, bool]:
        """Queues a job. Returns (job, existed): with a non-empty `dedup_key` matching an active job of the same
        kind, that job is returned instead and `existed` is True. ResourceExhausted when the queue is full.
        `peer` says who asked (for the log)."""
        self._check_open()
        if not self._started:
            raise RuntimeError("submit() before start()")
        started = time.perf_counter()
        # Shielded: a caller that goes away mid-insert must not leave the store half-way.
        job, existed = await asyncio.shield(
            self._admission.submit(kind, spec, timeout_s=timeout_s, dedup_key=dedup_key)
        )
        self._telemetry.db_write("jobs", "submit", time.perf_counter() - started)
        self._telemetry.job_accepted(job, existing=existed, peer=peer)
        if existed:
            live = self._runner.live.get(job.id)
            return (live.job if live is not None else job), True
        return job, False

    async def get(self, job_id: str) -> Job:
        self._check_open()
        live = self._runner.live.get(job_id)
        if live is not None:
            return live.job
        job = self._finished.get(job_id)
        if job is not None:
            self._finished.move_to_end(job_id)
            return job
        now = asyncio.get_running_loop().time()
        cached = self._remote.get(job_id)
        if cached is not None and now - cached[0] < self._poll_interval_s:
            return cached[1]
        signals = self._signals
        job = await self._store.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id!r} not found", field="job_id")
        if signals == self._signals:
            self._remember(job, now)
        return job

    def watcher_count(self, job_id: str) -> int:
        """Open watch streams on the job right now, on this server."""
        return self._hub.count(job_id)

    async def list(
        self,
        *,
        states: Collection[JobState],
        kinds: Collection[JobKind],
        page_size: int,
        page_token: str,
        parent_id: str = "",
    ) -> tuple[list[Job], str]:
        """A page of jobs, newest first, and the next page's token ("" on the last page): jobs of their own, or
        with `parent_id` that job's children."""
        self._check_open()
        jobs, next_token = await self._store.list_page(
            states=states, kinds=kinds, page_size=page_size, page_token=page_token, parent_id=parent_id
        )
        # A job running here has fresher progress in memory. The live snapshot is used only when it is in the same
        # state: a state change is stored before it is in memory.
        for i, job in enumerate(jobs):
            live = self._runner.live.get(job.id)
            if live is not None and live.job.state is job.state:
                jobs[i] = live.job
        return jobs, next_token

    async def cancel(self, job_id: str, *, peer: str = "") -> Job:
        """Pending: CANCELLED at once. Running (here or elsewhere): the flag is stored, the server running it stops
        its handler at once, and the job is returned still RUNNING with cancel_requested; it ends CANCELLED as soon
        as the handler has stopped. Cancelled: no-op. Other terminal states: FailedPrecondition. `peer` says who
        asked (for the log)."""
        self._check_open()
        asked = time.time()
        started = time.perf_counter()
        # Shielded like submit: the flag is either stored and acted on, or not stored at all.
        job = await asyncio.shield(self._store.request_cancel(job_id))
        self._telemetry.db_write("jobs", "cancel", time.perf_counter() - started)
        if job is None:
            raise NotFound(f"job {job_id!r} not found", field="job_id")
        if job.state is JobState.CANCELLED:
            self._telemetry.job_cancel_requested(job, peer=peer)
            # The store ends a pending job CANCELLED in the call (finish time from this process's clock); a job
            # that was cancelled before is a no-op.
            if job.start_time is None and job.finish_time is not None and job.finish_time >= asked:
                self._telemetry.job_finished(job, previous=JobState.PENDING)
            return job
        if job.terminal:
            raise FailedPrecondition(
                f"job {job_id} already ended {job.state.name}; only pending or running jobs can be cancelled",
                field="job_id",
            )
        self._telemetry.job_cancel_requested(job, peer=peer)
        local = self._runner.cancel(job_id)  # usually done already, by the change feed during the store call
        return local if local is not None else job

    async def delete(self, job_id: str) -> None:
        """Deletes a terminal job (and, through its handler, whatever belongs to it)."""
        self._check_open()
        job = await self.get(job_id)
        if job.parent_id:
            raise FailedPrecondition(
                f"job {job_id} is a shard of job {job.parent_id}; delete that job (its shards go with it)",
                field="job_id",
            )
        if not job.terminal:
            raise FailedPrecondition(
                f"job {job_id} is {job.state.name}; only finished jobs can be deleted (cancel it first)",
                field="job_id",
            )
        handler = self._handlers.get(job.kind)
        if handler is not None:
            await handler.on_deleted(job_id)
        deleted = await self._store.delete(job_id)
        self._forget(job_id)  # after the delete: a get() meanwhile may have cached it again
        if not deleted:
            raise NotFound(f"job {job_id!r} not found", field="job_id")

    async def wait(self, job_id: str, timeout_s: float) -> Job:
        """The job once it is terminal, or as it is when `timeout_s` has passed."""
        self._check_open()
        sub = self._hub.wait_on(job_id)  # before reading the snapshot, so no change can fall in between
        try:
            job = await self.get(job_id)
            if timeout_s > 0 and not job.terminal:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout_s):
                        while not job.terminal and not sub.closed:
                            job = await self._next(sub, job)
            live = self._runner.live.get(job_id)
            if live is not None and live.job.seq > job.seq:
                job = live.job
            if self._closed and not job.terminal:
                raise EngineClosed("the server is shutting down; wait again after it restarts")
            return job
        finally:
            self._hub.stop_waiting(sub)

    async def watch(self, job_id: str) -> AsyncGenerator[Job, None]:
        """Snapshots of the job: the current one at once, then the newest after each change (coalesced per
        watcher), ending after the terminal one. Raises NotFound or ResourceExhausted before the first snapshot,
        EngineClosed if the engine shuts down meanwhile. Use with contextlib.aclosing so the watcher is unregistered
        as soon as the consumer stops."""
        self._check_open()
        sub = self._hub.subscribe(job_id)  # before reading the snapshot, so no change can fall in between
        try:
            job = await self.get(job_id)
            sent = self._telemetry.watch_message_sent
            sent()
            yield job
            while not job.terminal:
                newest = await self._next(sub, job)
                if sub.closed:
                    raise EngineClosed("the server is shutting down; watch again after it restarts")
                if newest is not job:
                    job = newest
                    sent()
                    yield job
        finally:
            self._hub.unsubscribe(sub)

    async def count_by_state(self) -> JobCounts:
        """Jobs and shards in the store by state, every server's (for metrics)."""
        self._check_open()
        return await self._store.count_by_state()

    async def prune_expired(self) -> int:
        """Deletes terminal jobs that finished more than the retention period ago; returns how many."""
        return await self._retention.prune_expired()

    # ---- change feed (store.ChangeListener) ------------------------------------------------------------------

    def job_changed(self, event: ChangeEvent) -> None:
        self._signals += 1
        self._remote.pop(event.job_id, None)
        self._runner.child_changed(event.job_id)
        if event.deleted:
            self._forget(event.job_id)
            return
        if event.job_id in self._runner.live:
            if event.cancel_requested:
                self._runner.cancel(event.job_id)
            return  # otherwise our own write: memory is as fresh as the store
        if event.cancel_requested and event.state is JobState.RUNNING:
            self._runner.cancel(event.job_id)  # a claim of ours may be in flight
        if event.state is JobState.PENDING:
            self._runner.wake()
        if self._hub.is_followed(event.job_id):
            self._refresh_soon(event.job_id)

    def resync(self) -> None:
        self._signals += 1
        self._remote.clear()
        self._runner.wake()
        self._runner.wake_coordinators()
        for job_id in self._hub.followed():
            if job_id not in self._runner.live:
                self._refresh_soon(job_id)

    # ---- helpers ---------------------------------------------------------------------------------------------

    async def _next(self, sub: Subscription, job: Job) -> Job:
        """Waits for a snapshot newer than `job` (or the hub closing); returns it, or `job` if closed."""
        while True:
            await sub.event.wait()
            if sub.closed:
                return job
            newest = sub.take()
            if newest is not None and newest.seq > job.seq:
                return newest

    def _refresh_soon(self, job_id: str) -> None:
        """Reads a job that does not run here and publishes it to its followers (one read in flight per job)."""
        if job_id in self._refreshing:
            self._refresh_again.add(job_id)
            return
        self._refreshing.add(job_id)
        self._background.spawn(self._refresh(job_id))

    async def _refresh(self, job_id: str) -> None:
        try:
            while not self._closed:
                self._refresh_again.discard(job_id)
                signals = self._signals
                job = await self._store.get(job_id)
                if job is not None and job_id not in self._runner.live:
                    if signals == self._signals:
                        self._remember(job, asyncio.get_running_loop().time())
                    self._hub.publish(job)
                if job_id not in self._refresh_again:
                    return
        except Exception as error:
            log.warning("could not read job %s for its watchers (%s); the next poll retries", job_id, error)
        finally:
            self._refreshing.discard(job_id)

    async def _poll(self) -> None:
        """The floor under lost change signals: claims and followed jobs are re-checked every poll interval."""
        while True:
            await asyncio.sleep(self._poll_interval_s)
            self.resync()

    def _lease_lost(self) -> None:
        self._runner.lose_all()

    def _remember(self, job: Job, now: float) -> None:
        if job.terminal:
            self._remember_finished(job)
        else:
            self._remote[job.id] = (now, job)
            self._remote.move_to_end(job.id)
            if len(self._remote) > REMOTE_CACHE_SIZE:
                self._remote.popitem(last=False)

    def _remember_finished(self, job: Job) -> None:
        self._finished[job.id] = job  # final: safe to serve from memory until deleted or pruned
        self._finished.move_to_end(job.id)
        if len(self._finished) > FINISHED_CACHE_SIZE:
            self._finished.popitem(last=False)

    def _forget(self, job_id: str) -> None:
        self._finished.pop(job_id, None)
        self._remote.pop(job_id, None)

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed("the server is shutting down; retry after it restarts")
