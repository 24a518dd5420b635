"""The job engine: a bounded queue, concurrency, deadlines, cancellation, persistence and live fan-out.

Ownership: the engine is the only writer of the jobs it runs. While a job is active (pending or running) its
LiveJob in memory is what readers see; the store has the durable copy. Every state change is written to the store
before it is announced (published to watchers, returned to callers); progress is published at most every
`publish_interval_s` per job and checkpointed to the store at most every `checkpoint_interval_s`.

Restart behaviour (documented in the README):
- Clean shutdown (`close()`): running handlers are cancelled (they clean up in `finally`), and their jobs are
  written back as PENDING, so they run again, from the start, at the next start. Scans are idempotent and
  incremental, so a re-run redoes little.
- Crash (`kill -9`, power loss): jobs found RUNNING at start were interrupted. `handler.on_recovered` is called
  for each, then it is re-queued as PENDING like above. A job whose cancellation had been requested ends CANCELLED
  instead, and a job that has been interrupted by crashes MAX_CRASH_RECOVERIES times ends FAILED (ABORTED), so a
  job that kills the server cannot crash-loop it forever.
- PENDING jobs simply run, in their original order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Collection, Coroutine, Mapping
from typing import Any

from reelscan.service.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ReelscanError,
    ResourceExhausted,
    Unavailable,
)
from reelscan.service.jobs.handler import JobHandler
from reelscan.service.jobs.hub import WatchHub
from reelscan.service.jobs.live import LiveJob, RunContext, StopReason
from reelscan.service.jobs.model import (
    Job,
    JobError,
    JobKind,
    JobState,
    Progress,
    Stage,
    requeue_interrupted,
    transition,
)
from reelscan.service.jobs.outcome import RpcCode, error_for_exception
from reelscan.service.jobs.pacing import Throttle
from reelscan.service.jobs.store import JobStore

log = logging.getLogger(__name__)
# Each snapshot sent to a watcher costs ~50-80 us of event-loop time (gRPC send): a job's progress updates are spaced
# so that its watchers together receive at most this many per second, and the job itself keeps the loop.
MAX_WATCH_MESSAGES_PER_S = 2000
FINISHED_CACHE_SIZE = 1024

MAX_CRASH_RECOVERIES = 3
# Progress published after the last checkpoint is not in the store, so after a crash the stored seq may be behind
# what watchers saw. Jumping this far ahead keeps seq strictly increasing across the crash (checkpoints run every
# second and publishes are at most ~10/s, so the real gap is tens).
RECOVERY_SEQ_GAP = 1_000_000
# A handler that does not stop this long after being cancelled (it swallowed the cancellation, or is stuck in
# blocking code) is abandoned: its job ends anyway, so one bad handler cannot hold a job RUNNING forever.
HANDLER_STOP_GRACE_S = 5.0
# How long close() waits for jobs to stop before giving up on them (they are then recovered at the next start).
CLOSE_GRACE_S = HANDLER_STOP_GRACE_S + 2.0
PRUNE_BATCH = 500
# Back-off between attempts to store a job's final state.
SAVE_RETRY_DELAYS_S = (0.1, 0.3, 1.0, 3.0)


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
    ) -> None:
        for name, value in (
            ("max_concurrent", max_concurrent),
            ("max_queued", max_queued),
            ("default_timeout_s", default_timeout_s),
            ("retention_s", retention_s),
            ("max_watchers", max_watchers),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self._store = store
        self._max_concurrent = max_concurrent
        self._max_queued = max_queued
        self._default_timeout_s = default_timeout_s
        self._retention_s = retention_s
        self._publish_interval_s = publish_interval_s
        self._checkpoint_interval_s = checkpoint_interval_s
        # Pruning is not urgent: a tenth of the retention period, within [50 ms, 10 min].
        self._prune_interval_s = (
            prune_interval_s if prune_interval_s is not None else min(max(retention_s / 10, 0.05), 600.0)
        )
        self._handlers: dict[JobKind, JobHandler] = {}
        self._hub = WatchHub(max_watchers)
        self._live: dict[str, LiveJob] = {}  # active jobs
        # Recently read terminal jobs: GetJob/WaitJob on a finished job skip the store (a thread hop per call).
        self._finished: OrderedDict[str, Job] = OrderedDict()
        self._queue: deque[str] = deque()  # pending job ids, oldest first
        self._running: set[str] = set()
        self._dedup: dict[tuple[JobKind, str], str] = {}  # (kind, dedup_key) -> active job id
        self._submit_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self._prune_task: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def register(self, kind: JobKind, handler: JobHandler) -> None:
        if self._started:
            raise RuntimeError("register job handlers before start()")
        self._handlers[kind] = handler

    async def start(self) -> None:
        """Recovers jobs left active by the previous run, then starts running pending jobs and pruning old ones."""
        if self._started:
            raise RuntimeError("engine already started")
        await self._recover()
        self._started = True
        self._prune_task = asyncio.create_task(self._prune_loop(), name="reelscan-job-pruner")
        self._pump()

    async def close(self) -> None:
        """Stops running jobs (re-queued for the next start), ends watch streams and closes the store."""
        if self._closed:
            return
        self._closed = True
        if self._prune_task is not None:
            self._prune_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prune_task
        drivers = [live.driver for live in self._live.values() if live.driver is not None]
        for live in list(self._live.values()):
            if live.driver is not None:
                self._stop(live, StopReason.SHUTDOWN)
        if drivers:
            _, stuck = await asyncio.wait(drivers, timeout=CLOSE_GRACE_S)
            if stuck:
                log.warning(
                    "%d job(s) did not stop within %.0fs; they will be recovered at next start",
                    len(stuck),
                    CLOSE_GRACE_S,
                )
                for task in stuck:
                    task.cancel()
                await asyncio.wait(stuck)
        self._hub.close()
        for live in self._live.values():
            self._quiet(live)
            live.settled.set()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._store.close()

    # ---- API -------------------------------------------------------------------------------------------------

    async def submit(
        self, kind: JobKind, spec: Mapping[str, Any], *, timeout_s: float | None, dedup_key: str = ""
    ) -> tuple[Job, bool]:
        """Queues a job. Returns (job, existed): with a non-empty `dedup_key` matching an active job of the same
        kind, that job is returned instead and `existed` is True. ResourceExhausted when the queue is full."""
        self._check_open()
        if not self._started:
            raise RuntimeError("submit() before start()")
        handler = self._handlers.get(kind)
        if handler is None:
            raise InvalidArgument(f"no handler for job kind {kind.name}", field="kind")
        timeout = self._default_timeout_s if timeout_s is None else timeout_s
        if not (math.isfinite(timeout) and timeout > 0):
            raise InvalidArgument(f"timeout must be a positive number of seconds, got {timeout_s}", field="timeout")
        async with self._submit_lock:  # dedup check, queue bound and insert are one step for concurrent submits
            if dedup_key:
                existing = self._dedup.get((kind, dedup_key))
                if existing is not None:
                    return self._live[existing].job, True
            if len(self._queue) >= self._max_queued:
                raise ResourceExhausted(
                    f"{len(self._queue)} jobs are already waiting (limit {self._max_queued}); try again later"
                )
            now = time.time()
            job = Job(
                id=uuid.uuid4().hex,
                kind=kind,
                state=JobState.PENDING,
                spec=dict(spec),
                timeout_s=timeout,
                create_time=now,
                update_time=now,
                seq=1,
                progress=Progress(stage=Stage.QUEUED),
                dedup_key=dedup_key,
            )
            # Shielded: a caller that goes away mid-insert must not leave a stored job the engine does not run.
            await asyncio.shield(self._spawn(self._insert(LiveJob(job, handler))))
        return job, False

    async def get(self, job_id: str) -> Job:
        self._check_open()
        live = self._live.get(job_id)
        if live is not None:
            return live.job
        job = self._finished.get(job_id)
        if job is not None:
            self._finished.move_to_end(job_id)
            return job
        job = await self._store.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id!r} not found", field="job_id")
        if job.terminal:  # final: safe to serve from memory until deleted or pruned
            self._finished[job_id] = job
            if len(self._finished) > FINISHED_CACHE_SIZE:
                self._finished.popitem(last=False)
        return job

    def watcher_count(self, job_id: str) -> int:
        """Open watch streams on the job right now."""
        return self._hub.count(job_id)

    async def list(
        self, *, states: Collection[JobState], kinds: Collection[JobKind], page_size: int, page_token: str
    ) -> tuple[list[Job], str]:
        """A page of jobs, newest first, and the next page's token ("" on the last page)."""
        self._check_open()
        jobs, next_token = await self._store.list_page(
            states=states, kinds=kinds, page_size=page_size, page_token=page_token
        )
        # The store has the state of every job, but a running job's progress is fresher in memory. The live
        # snapshot is used only when it is in the same state: a state change is stored before it is in memory.
        for i, job in enumerate(jobs):
            live = self._live.get(job.id)
            if live is not None and live.job.state is job.state:
                jobs[i] = live.job
        return jobs, next_token

    async def cancel(self, job_id: str) -> Job:
        """Pending: CANCELLED at once. Running: its handler is cancelled now, and the job is returned still RUNNING
        with cancel_requested; it ends CANCELLED as soon as the handler has stopped. Cancelled: no-op.
        Other terminal states: FailedPrecondition."""
        self._check_open()
        live = self._live.get(job_id)
        if live is None:
            job = await self.get(job_id)
            if job.state is JobState.CANCELLED:
                return job
            raise FailedPrecondition(
                f"job {job_id} already ended {job.state.name}; only pending or running jobs can be cancelled",
                field="job_id",
            )
        if live.cancel_requested:
            if live.job.state is not JobState.RUNNING:
                await live.settled.wait()  # a cancel of this pending job is being stored
            return live.job
        live.cancel_requested = True
        live.dirty = True
        if live.driver is None:
            # Waiting in the queue: nothing runs, so it ends here. Shielded like submit's insert.
            self._queue.remove(job_id)
            live.stop_reason, live.interrupted = StopReason.CANCEL, True
            await asyncio.shield(self._spawn(self._end(live, JobState.CANCELLED)))
            return live.job
        self._stop(live, StopReason.CANCEL)
        if live.job.state is not JobState.RUNNING:
            # Its start is being written; the driver will see the stop right after and end it.
            await live.settled.wait()
            return live.job
        self._publish(live)
        self._checkpoint_soon(live)  # so a crash from here on still ends it CANCELLED at recovery
        return live.job

    async def delete(self, job_id: str) -> None:
        """Deletes a terminal job (and, through its handler, whatever belongs to it)."""
        self._check_open()
        live = self._live.get(job_id)
        if live is not None:
            raise FailedPrecondition(
                f"job {job_id} is {live.job.state.name}; only finished jobs can be deleted (cancel it first)",
                field="job_id",
            )
        job = await self.get(job_id)
        handler = self._handlers.get(job.kind)
        if handler is not None:
            await handler.on_deleted(job_id)
        deleted = await self._store.delete(job_id)
        self._finished.pop(job_id, None)  # after the delete: a get() meanwhile may have cached it again
        if not deleted:
            raise NotFound(f"job {job_id!r} not found", field="job_id")

    async def wait(self, job_id: str, timeout_s: float) -> Job:
        """The job once it is terminal, or as it is when `timeout_s` has passed."""
        self._check_open()
        live = self._live.get(job_id)
        if live is None:
            return await self.get(job_id)
        if timeout_s > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await live.settled.wait()
        if self._closed and not live.job.terminal:
            raise EngineClosed("the server is shutting down; wait again after it restarts")
        return live.job

    async def watch(self, job_id: str) -> AsyncGenerator[Job, None]:
        """Snapshots of the job: the current one at once, then the newest after each change (coalesced per
        watcher), ending after the terminal one. Raises NotFound or ResourceExhausted before the first snapshot,
        EngineClosed if the engine shuts down meanwhile. Use with contextlib.aclosing so the watcher is unregistered
        as soon as the consumer stops."""
        self._check_open()
        sub = self._hub.subscribe(job_id)  # before reading the snapshot, so no change can fall in between
        try:
            job = await self.get(job_id)
            yield job
            while not job.terminal:
                await sub.event.wait()
                if sub.closed:
                    raise EngineClosed("the server is shutting down; watch again after it restarts")
                newest = sub.take()
                if newest is not None and newest.seq > job.seq:
                    job = newest
                    yield job
        finally:
            self._hub.unsubscribe(sub)

    async def prune_expired(self) -> int:
        """Deletes terminal jobs that finished more than retention_s ago; returns how many."""
        cutoff = time.time() - self._retention_s
        pruned = 0
        while True:
            batch = await self._store.list_finished_before(cutoff, PRUNE_BATCH)
            deleted = 0
            for job in batch:
                handler = self._handlers.get(job.kind)
                try:
                    if handler is not None:
                        await handler.on_deleted(job.id)
                    deleted += await self._store.delete(job.id)
                    self._finished.pop(job.id, None)
                except Exception:
                    log.exception("could not prune job %s; will retry", job.id)
            pruned += deleted
            if len(batch) < PRUNE_BATCH or deleted == 0:
                return pruned

    # ---- running jobs ----------------------------------------------------------------------------------------

    async def _insert(self, live: LiveJob) -> None:
        await self._store.insert(live.job)
        self._activate(live)
        self._pump()

    def _activate(self, live: LiveJob) -> None:
        self._live[live.id] = live
        if live.job.dedup_key:
            self._dedup[(live.job.kind, live.job.dedup_key)] = live.id
        self._queue.append(live.id)

    def _pump(self) -> None:
        """Starts pending jobs while there are free slots."""
        if not self._started or self._closed:
            return
        while self._queue and len(self._running) < self._max_concurrent:
            live = self._live[self._queue.popleft()]
            self._running.add(live.id)
            live.driver = asyncio.create_task(self._drive(live), name=f"reelscan-job-{live.id}")

    async def _drive(self, live: LiveJob) -> None:
        try:
            try:
                await self._begin(live)
                if live.stop_reason is None:
                    ctx = RunContext(live, lambda: self._poke(live))
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
                # and is recovered as interrupted at the next start.
                if live.handler_task is not None:
                    live.handler_task.cancel()
                raise
            await self._conclude(live)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s: engine error", live.id)
            if not live.job.terminal and not self._closed:
                with contextlib.suppress(Exception):
                    await self._end(live, JobState.FAILED, JobError(int(RpcCode.INTERNAL), "internal engine error"))
        finally:
            self._quiet(live)
            self._running.discard(live.id)
            self._pump()

    async def _begin(self, live: LiveJob) -> None:
        running = transition(live.snapshot(_mono()), JobState.RUNNING, now=time.time())
        live.busy = True
        try:
            await self._store.save(running)
        finally:
            live.busy = False
        live.adopt(running)
        live.rate.reset()
        live.publisher = Throttle(
            lambda: max(self._publish_interval_s, self._hub.count(live.id) / MAX_WATCH_MESSAGES_PER_S),
            lambda: self._publish(live),
        )
        live.checkpointer = Throttle(self._checkpoint_interval_s, lambda: self._checkpoint_soon(live))
        live.deadline = asyncio.get_running_loop().call_later(running.timeout_s, self._stop, live, StopReason.TIMEOUT)
        self._hub.publish(running)

    async def _conclude(self, live: LiveJob) -> None:
        """Decides how the job ended, from why it was stopped (if it was) and how its handler finished."""
        task = live.handler_task
        if task is not None and not task.done():
            log.error("job %s: handler ignored cancellation for %gs; abandoning it", live.id, HANDLER_STOP_GRACE_S)
        error = None if task is None or not task.done() or task.cancelled() else task.exception()
        reason = live.stop_reason if live.interrupted else None
        if reason is StopReason.SHUTDOWN:
            await self._requeue_for_shutdown(live)
            return
        if error is not None and reason is not None:
            log.warning("job %s: handler raised while being stopped (%s)", live.id, reason.value, exc_info=error)
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

    async def _end(self, live: LiveJob, state: JobState, error: JobError | None = None) -> None:
        """Moves the job to a terminal state: stored first, then announced. If the store fails, the end is still
        announced (watchers and waiters must not hang) and the stored row is recovered at the next start."""
        self._quiet(live)
        final = transition(live.snapshot(_mono()), state, now=time.time(), error=error)
        live.busy = True
        try:
            if not await self._save_with_retries(final):
                log.error("job %s: stored row was already final or gone when storing %s", live.id, state.name)
        except Exception:
            log.exception("job %s: could not store its %s state", live.id, state.name)
        finally:
            live.busy = False
        live.adopt(final)
        self._hub.publish(final)
        self._live.pop(live.id, None)
        if final.dedup_key and self._dedup.get((final.kind, final.dedup_key)) == live.id:
            del self._dedup[(final.kind, final.dedup_key)]
        live.settled.set()

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

    async def _requeue_for_shutdown(self, live: LiveJob) -> None:
        requeued = requeue_interrupted(live.snapshot(_mono()), now=time.time(), crashed=False)
        live.busy = True
        try:
            await self._store.save(requeued)
        except Exception:
            log.exception("job %s: could not re-queue it at shutdown; it will be recovered at next start", live.id)
        finally:
            live.busy = False
        live.adopt(requeued)

    def _stop(self, live: LiveJob, reason: StopReason) -> None:
        """Interrupts the job's handler (or keeps it from starting); the first reason wins."""
        if live.stop_reason is not None:
            return
        live.stop_reason = reason
        task = live.handler_task
        if task is None or not task.done():
            live.interrupted = True
            if task is not None:
                task.cancel()
                live.abandon_timer = asyncio.get_running_loop().call_later(HANDLER_STOP_GRACE_S, live.abandoned.set)

    # ---- progress: publishing and checkpoints ----------------------------------------------------------------

    def _poke(self, live: LiveJob) -> None:
        if live.publisher is not None:
            live.publisher.poke()

    def _publish(self, live: LiveJob) -> None:
        """Publishes the job's raw progress as a new snapshot (next seq), unless a state change is in flight."""
        if not live.dirty or live.busy or live.job.state is not JobState.RUNNING:
            return
        job = dataclasses.replace(live.snapshot(_mono()), seq=live.job.seq + 1, update_time=time.time())
        live.job = job
        live.dirty = False
        self._hub.publish(job)
        if live.checkpointer is not None:
            live.checkpointer.poke()

    def _checkpoint_soon(self, live: LiveJob) -> None:
        if live.checkpoint_task is not None and not live.checkpoint_task.done():
            live.checkpoint_again = True
            return
        live.checkpoint_task = self._spawn(self._write_checkpoints(live))

    async def _write_checkpoints(self, live: LiveJob) -> None:
        while True:
            live.checkpoint_again = False
            if live.job.state is not JobState.RUNNING:
                return
            try:
                await self._store.checkpoint(live.job)
            except Exception:
                log.warning("job %s: progress checkpoint failed", live.id, exc_info=True)
                return
            if not live.checkpoint_again:
                return

    def _quiet(self, live: LiveJob) -> None:
        """Cancels the job's timers (throttles, deadline)."""
        for throttle in (live.publisher, live.checkpointer):
            if throttle is not None:
                throttle.cancel()
        for timer in (live.deadline, live.abandon_timer):
            if timer is not None:
                timer.cancel()

    # ---- recovery and retention ------------------------------------------------------------------------------

    async def _recover(self) -> None:
        for job in await self._store.list_active():
            handler = self._handlers.get(job.kind)
            now = time.time()
            if job.state is JobState.RUNNING:
                job = dataclasses.replace(job, seq=job.seq + RECOVERY_SEQ_GAP)
                job = await self._recover_interrupted(job, handler, now)
            if job.state is not JobState.PENDING:
                continue
            if handler is None:
                message = f"no handler is registered for job kind {job.kind.name} on this server"
                await self._store.save(
                    transition(job, JobState.FAILED, now=now, error=JobError(int(RpcCode.FAILED_PRECONDITION), message))
                )
                continue
            self._activate(LiveJob(job, handler))
        if self._queue:
            log.info("%d pending job(s) will run", len(self._queue))

    async def _recover_interrupted(self, job: Job, handler: JobHandler | None, now: float) -> Job:
        """A job found RUNNING at start: the previous server died while it ran. Returns what it becomes (stored)."""
        if handler is not None:
            try:
                await handler.on_recovered(job.id, job.spec)
            except Exception:
                log.exception("job %s: on_recovered failed", job.id)
        if job.cancel_requested:
            new = transition(job, JobState.CANCELLED, now=now)
        elif handler is None:
            message = f"interrupted by a server restart, and no handler for job kind {job.kind.name} is registered"
            new = transition(job, JobState.FAILED, now=now, error=JobError(int(RpcCode.FAILED_PRECONDITION), message))
        elif job.recoveries + 1 >= MAX_CRASH_RECOVERIES:
            message = (
                f"the server stopped unexpectedly while this job ran, {job.recoveries + 1} times; "
                "it is not run again (it may be what crashes the server)"
            )
            new = transition(job, JobState.FAILED, now=now, error=JobError(int(RpcCode.ABORTED), message))
        else:
            new = requeue_interrupted(job, now=now, crashed=True)
        log.warning("job %s was interrupted by a server restart: now %s", job.id, new.state.name)
        await self._store.save(new)
        return new

    async def _prune_loop(self) -> None:
        while True:
            try:
                pruned = await self.prune_expired()
                if pruned:
                    log.info("pruned %d finished job(s) older than %gs", pruned, self._retention_s)
            except Exception:
                log.exception("job pruning failed; will retry")
            await asyncio.sleep(self._prune_interval_s)

    # ---- helpers ---------------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed("the server is shutting down; retry after it restarts")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Runs a background task, keeping a reference until it ends (asyncio only keeps weak ones)."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task


def _mono() -> float:
    return asyncio.get_running_loop().time()
