"""The run driver: claims pending jobs while this server has free slots, runs each one's handler in its own task,
and stores how it ended.

Every state change follows one rule (`_commit`): write it to the store, fenced on the job's owner and epoch, then
announce it (watch hub). A write the store refuses means the job is no longer ours (our lease expired and another
server, or this one's recovery, took it over): nothing more is written, the handler is stopped, and the stored row
is announced instead, so watchers follow whoever runs it now.

Restart behaviour (documented in the README):
- Clean shutdown (`close()`): running handlers are cancelled (they clean up in `finally`) and their jobs are handed
  back as PENDING, so they run again from the start, here after a restart or on any other server. Scans are
  idempotent and incremental, so a re-run redoes little.
- Crash (`kill -9`, power loss): the job stays RUNNING under the dead server's lease until it expires; then
  recovery applies the crash rules (model.recover_crashed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping

from reelscan.service.errors import ReelscanError
from reelscan.service.jobs.background import BackgroundTasks
from reelscan.service.jobs.children import StoreChildJobs, parent_of
from reelscan.service.jobs.handler import JobHandler
from reelscan.service.jobs.hub import WatchHub
from reelscan.service.jobs.lease import LeaseKeeper
from reelscan.service.jobs.live import LiveJob, RunContext, StopReason
from reelscan.service.jobs.model import Job, JobError, JobKind, JobState, requeue_interrupted, transition
from reelscan.service.jobs.outcome import RpcCode, error_for_exception
from reelscan.service.jobs.progress import ProgressPublisher
from reelscan.service.jobs.store import JobStore
from reelscan.service.telemetry.events import NO_TELEMETRY, Telemetry

log = logging.getLogger(__name__)

# A handler that does not stop this long after being cancelled (it swallowed the cancellation, or is stuck in
# blocking code) is abandoned: its job ends anyway, so one bad handler cannot hold a job RUNNING forever.
HANDLER_STOP_GRACE_S = 5.0
# How long close() waits for jobs to stop before giving up on them (they are then recovered as crashed).
CLOSE_GRACE_S = HANDLER_STOP_GRACE_S + 2.0
# Back-off between attempts to store a job's final state.
SAVE_RETRY_DELAYS_S = (0.1, 0.3, 1.0, 3.0)
# A cancel signal for a job that is not (yet) running here is remembered this long: a claim that read the row just
# before the flag was set must still see it.
RECENT_CANCEL_S = 30.0
RECENT_CANCEL_MAX = 10_000


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        hub: WatchHub,
        handlers: Mapping[JobKind, JobHandler],
        lease: LeaseKeeper,
        background: BackgroundTasks,
        *,
        max_concurrent: int,
        publish_interval_s: float,
        checkpoint_interval_s: float,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._store = store
        self._telemetry = telemetry
        self._hub = hub
        self._handlers = handlers
        self._lease = lease
        self._background = background
        self._max_concurrent = max_concurrent
        self._progress = ProgressPublisher(
            store,
            hub,
            background,
            publish_interval_s=publish_interval_s,
            checkpoint_interval_s=checkpoint_interval_s,
            on_lost=self.lose,
            telemetry=telemetry,
        )
        self.live: dict[str, LiveJob] = {}  # the jobs running here
        self._recent_cancels: OrderedDict[str, float] = OrderedDict()
        self._claim_task: asyncio.Task[None] | None = None
        self._claim_again = False
        self._open = False

    # ---- claiming --------------------------------------------------------------------------------------------

    def open(self) -> None:
        self._open = True
        self.wake()

    def _free_slots(self) -> int:
        return self._max_concurrent - sum(1 for live in self.live.values() if not live.coordinating)

    def child_changed(self, job_id: str) -> None:
        """A change event for `job_id`: if it is a child of a parent coordinating here, wake that parent."""
        parent = self.live.get(parent_of(job_id))
        if parent is not None and parent.coordinating:
            parent.children_changed.set()

    def wake_coordinators(self) -> None:
        for live in self.live.values():
            if live.coordinating:
                live.children_changed.set()

    def release_slot(self, live: LiveJob) -> None:
        """A parent that now only waits for its children gives its slot back (they may need it)."""
        if not live.coordinating:
            live.coordinating = True
            self.wake()

    def wake(self) -> None:
        """There may be pending jobs: claim some if there are free slots (one claim pass at a time)."""
        if not self._open or self._free_slots() <= 0:
            return
        if self._claim_task is not None and not self._claim_task.done():
            self._claim_again = True
            return
        self._claim_task = self._background.spawn(self._claim_pass(), name="reelscan-claim")

    async def _claim_pass(self) -> None:
        while self._open and self._lease.valid:
            self._claim_again = False
            free = self._free_slots()
            if free <= 0:
                return
            owner = self._lease.owner.id
            started = time.perf_counter()
            try:
                jobs = await self._store.claim(owner, list(self._handlers), free)
            except Exception as error:
                log.warning("claiming pending jobs failed (%s); will retry", error)
                return
            self._telemetry.db_write("jobs", "claim", time.perf_counter() - started)
            for job in jobs:
                if job.owner == self._lease.owner.id:
                    self._start(job)
                # else: the lease was lost during the claim; recovery hands the job to whoever is alive
            if len(jobs) < free and not self._claim_again:
                return

    def _start(self, job: Job) -> None:
        live = LiveJob(job, self._handlers[job.kind])
        self.live[job.id] = live
        self._telemetry.job_started(job)
        self._telemetry.jobs_running(len(self.live))
        self._hub.publish(job)
        self._progress.begin(live)
        live.deadline = asyncio.get_running_loop().call_later(job.timeout_s, self.stop, live, StopReason.TIMEOUT)
        if job.cancel_requested or self._recent_cancels.pop(job.id, None) is not None:
            live.request_cancel()
            self.stop(live, StopReason.CANCEL)
        if not self._open:
            self.stop(live, StopReason.SHUTDOWN)
        live.driver = asyncio.create_task(self._drive(live), name=f"reelscan-job-{job.id}")

    # ---- running ---------------------------------------------------------------------------------------------

    async def _drive(self, live: LiveJob) -> None:
        try:
            try:
                if live.stop_reason is None:
                    children = StoreChildJobs(
                        self._store, live, running_here=self.live.get, release_slot=self.release_slot
                    )
                    ctx = RunContext(live, lambda: self._progress.poke(live), children)
                    live.handler_task = asyncio.create_task(live.handler.run(ctx), name=f"reelscan-handler-{live.id}")
                    abandon = asyncio.create_task(live.abandoned.wait())
                    try:
                        # asyncio.wait, not await: the handler's own exception or cancellation must not look like
                        # ours (the driver's).
                        await asyncio.wait([live.handler_task, abandon], return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        abandon.cancel()
            except asyncio.CancelledError:
                # Only close() cancels a driver, once the grace period is over: the job stays RUNNING in the store
                # and is recovered as crashed once this server's lease has expired.
                if live.handler_task is not None:
                    live.handler_task.cancel()
                raise
            await self._conclude(live)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s: engine error", live.id)
            if not live.job.terminal and self._open and live.stop_reason is not StopReason.LOST:
                with contextlib.suppress(Exception):
                    await self._end(live, JobState.FAILED, JobError(int(RpcCode.INTERNAL), "internal engine error"))
        finally:
            self._progress.quiet(live)
            if self.live.get(live.id) is live:
                del self.live[live.id]
            self._telemetry.jobs_running(len(self.live))
            self.wake()

    async def _conclude(self, live: LiveJob) -> None:
        """Decides how the job ended, from why it was stopped (if it was) and how its handler finished."""
        task = live.handler_task
        if task is not None and not task.done():
            log.error("job %s: handler ignored cancellation for %gs; abandoning it", live.id, HANDLER_STOP_GRACE_S)
        if live.stop_reason is StopReason.LOST:
            await self._drop_lost(live)
            return
        error = None if task is None or not task.done() or task.cancelled() else task.exception()
        reason = live.stop_reason if live.interrupted else None
        if reason is StopReason.SHUTDOWN:
            await self._hand_back(live)
            return
        if error is not None and reason is not None:
            log.warning("job %s: handler raised while being stopped (%s)", live.id, reason.value, exc_info=error)
        if live.coordinating:
            await self._cancel_children(live)
        if reason is StopReason.CANCEL:
            await self._end(live, JobState.CANCELLED)
        elif reason is StopReason.TIMEOUT:
            message = f"the job ran longer than its timeout of {live.job.timeout_s:g}s"
            await self._end(live, JobState.TIMED_OUT, JobError(int(RpcCode.DEADLINE_EXCEEDED), message))
        elif task is not None and task.cancelled():
            message = "the job's work was cancelled from inside its handler"
            await self._end(live, JobState.FAILED, JobError(int(RpcCode.ABORTED), message))
        elif error is not None:
            if not isinstance(error, ReelscanError):
                log.error("job %s: handler failed", live.id, exc_info=error)
            await self._end(live, JobState.FAILED, error_for_exception(error))
        else:
            await self._end(live, JobState.SUCCEEDED)

    async def _cancel_children(self, live: LiveJob) -> None:
        """A parent ends (timed out, failed, or done with children somehow still active): none may outlive it.
        A cancelled parent's children were cancelled with it by the store; this covers the other endings."""
        try:
            children = await self._store.list_children(live.id)
            for child in children:
                if not child.terminal:
                    await self._store.request_cancel(child.id)
        except Exception as error:
            log.warning("job %s: could not cancel its children (%s); they end on their own", live.id, error)

    async def _end(self, live: LiveJob, state: JobState, error: JobError | None = None) -> None:
        self._progress.quiet(live)
        final = transition(live.snapshot(_mono()), state, now=time.time(), error=error)
        await self._commit(live, final)

    async def _hand_back(self, live: LiveJob) -> None:
        """Shutdown: the job goes back to PENDING for any server (this one after a restart included)."""
        requeued = requeue_interrupted(live.snapshot(_mono()), now=time.time(), crashed=False)
        await self._commit(live, requeued, announce=False, retry=False)

    async def _commit(self, live: LiveJob, new: Job, *, announce: bool = True, retry: bool = True) -> None:
        """Writes a state change, then announces it. If the store fails outright, the change is announced anyway
        (watchers and waiters must not hang) and the stored row is recovered as crashed later."""
        live.busy = True
        started = time.perf_counter()
        try:
            stored = await (self._save_with_retries(new) if retry else self._store.save(new))
            self._telemetry.db_write("jobs", "save", time.perf_counter() - started)
        except Exception:
            log.exception("job %s: could not store its %s state", live.id, new.state.name)
            stored = True
        finally:
            live.busy = False
        if not stored:
            await self._drop_lost(live)
            return
        previous = live.job.state
        live.adopt(new)
        if new.terminal:
            self._telemetry.job_finished(new, previous=previous)
        elif new.state is JobState.PENDING:
            self._telemetry.job_requeued(new)
        if announce:
            self._hub.publish(new)
        if self.live.get(live.id) is live:
            del self.live[live.id]

    async def _save_with_retries(self, job: Job) -> bool:
        """Stores a final state, retrying transient failures (e.g. a lock held longer than the busy timeout):
        an end that is announced but not stored would show the job as active again after a restart."""
        for delay in SAVE_RETRY_DELAYS_S:
            try:
                return await self._store.save(job)
            except Exception as error:  # any store error may be transient; the last attempt raises
                log.warning("job %s: storing %s failed (%s); retrying in %gs", job.id, job.state.name, error, delay)
                await asyncio.sleep(delay)
        return await self._store.save(job)

    async def _drop_lost(self, live: LiveJob) -> None:
        if self.live.get(live.id) is live:
            del self.live[live.id]
        log.warning("job %s: this server no longer owns it (its lease ended); stopped here, nothing written", live.id)
        try:
            stored = await self._store.get(live.id)
        except Exception:
            return  # watchers catch up at the next poll
        if stored is not None:
            self._hub.publish(stored)

    # ---- stopping --------------------------------------------------------------------------------------------

    def stop(self, live: LiveJob, reason: StopReason) -> None:
        """Interrupts the job's handler (or keeps it from starting); the first reason wins."""
        if live.stop(reason) and live.handler_task is not None:
            live.abandon_timer = asyncio.get_running_loop().call_later(HANDLER_STOP_GRACE_S, live.abandoned.set)

    def cancel(self, job_id: str) -> Job | None:
        """A cancel was requested (the flag is stored): stops the job if it runs here and returns its snapshot;
        otherwise remembers the request for a moment (a claim in flight may not have seen the flag) -> None."""
        live = self.live.get(job_id)
        if live is None:
            self._recent_cancels[job_id] = _mono()
            while self._recent_cancels and (
                len(self._recent_cancels) > RECENT_CANCEL_MAX
                or next(iter(self._recent_cancels.values())) < _mono() - RECENT_CANCEL_S
            ):
                self._recent_cancels.popitem(last=False)
            return None
        if live.request_cancel():
            self.stop(live, StopReason.CANCEL)
            self._progress.publish(live)
        job = live.job
        return job if job.cancel_requested else dataclasses.replace(job, cancel_requested=True)

    def lose(self, live: LiveJob) -> None:
        self.stop(live, StopReason.LOST)

    def lose_all(self) -> None:
        for live in list(self.live.values()):
            self.lose(live)

    async def close(self) -> None:
        """Stops claiming, then stops every job here; they are handed back as PENDING."""
        self._open = False
        if self._claim_task is not None:
            with contextlib.suppress(Exception):
                await self._claim_task
        drivers = [live.driver for live in self.live.values() if live.driver is not None]
        for live in list(self.live.values()):
            self.stop(live, StopReason.SHUTDOWN)
        if drivers:
            _, stuck = await asyncio.wait(drivers, timeout=CLOSE_GRACE_S)
            if stuck:
                log.warning(
                    "%d job(s) did not stop within %.0fs; they will be recovered as crashed", len(stuck), CLOSE_GRACE_S
                )
                for task in stuck:
                    task.cancel()
                await asyncio.wait(stuck)
        for live in self.live.values():
            self._progress.quiet(live)


def _mono() -> float:
    return asyncio.get_running_loop().time()
