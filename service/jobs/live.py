"""In-memory state of a job this server runs, and the context its handler reports through.

While a job runs here, its LiveJob is the source of truth for readers on this server: the newest published
snapshot (`job`) plus the raw progress the handler reported since (`stage`, `done`, ...). The engine turns raw
progress into snapshots at a bounded rate (`next_snapshot()`), so handlers may report as often as they like at the
cost of a few attribute writes. Every change of the LiveJob's own state goes through its methods.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import Callable, Mapping
from typing import Any

from reelscan.service.jobs.handler import ChildJobs, Claim, JobHandler
from reelscan.service.jobs.model import Job, JobState, Progress, Stage
from reelscan.service.jobs.pacing import RateMeter, Throttle

# A running job's fraction stays below 1.0 so that 1.0 always means SUCCEEDED, even when the last item is done
# and only the final bookkeeping is left.
RUNNING_FRACTION_CAP = 0.999


class StopReason(enum.Enum):
    """Why the engine interrupted a job's handler."""

    CANCEL = "cancel"  # CancelJob
    TIMEOUT = "timeout"  # the job's deadline passed
    SHUTDOWN = "shutdown"  # the engine is closing; the job is handed back (PENDING) for any server to run
    LOST = "lost"  # this server no longer owns the job (its lease expired, another server recovered it)


class LiveJob:
    def __init__(self, job: Job, handler: JobHandler) -> None:
        self.job = job  # the newest published snapshot
        self.handler = handler
        progress = job.progress
        self.stage = progress.stage
        self.done = progress.done
        self.total = progress.total
        self.current_item = progress.current_item
        self.result: dict[str, int] = dict(job.result)
        self.cancel_requested = job.cancel_requested
        self.dirty = False  # raw progress changed since `job` was published
        self.busy = False  # a state change is being written: progress publishing waits so seqs stay ordered
        self.rate = RateMeter()
        self.driver: asyncio.Task[None] | None = None  # the engine task that runs this job, once started
        self.handler_task: asyncio.Task[None] | None = None
        self.stop_reason: StopReason | None = None
        self.interrupted = False  # the handler was stopped (or never started) because of `stop_reason`
        self.publisher: Throttle | None = None
        self.checkpointer: Throttle | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.abandoned = asyncio.Event()  # set when a stopped handler overstays HANDLER_STOP_GRACE_S
        self.abandon_timer: asyncio.TimerHandle | None = None
        self.checkpoint_task: asyncio.Task[None] | None = None
        self.checkpoint_again = False
        self.coordinating = False  # only waits for its children: does not hold one of the server's job slots
        self.children_changed = asyncio.Event()  # set by the change feed when one of its children changed

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def accepts_reports(self) -> bool:
        return self.job.state is JobState.RUNNING and not self.busy

    def report(
        self,
        *,
        stage: Stage | None = None,
        done: int | None = None,
        total: int | None = None,
        current_item: str | None = None,
    ) -> None:
        if stage is not None and stage != self.stage:
            # A new stage counts its own items; the rate of the old one says nothing about the new one.
            self.stage, self.done, self.total = stage, 0, 0
            self.rate.reset()
        if done is not None:
            self.done = max(0, int(done))
        if total is not None:
            self.total = max(0, int(total))
        if current_item is not None:
            self.current_item = current_item
        self.dirty = True

    def snapshot(self, monotonic_now: float) -> Job:
        """The published snapshot with the raw progress folded in; same seq (the caller assigns the next one)."""
        job = self.job
        progress = job.progress
        if job.state is JobState.RUNNING:
            fraction = progress.fraction
            if self.total > 0:
                # Never backwards (a new stage restarts its counts; a re-run after a restart starts from zero).
                fraction = max(fraction, min(self.done / self.total, RUNNING_FRACTION_CAP))
            rate = self.rate.update(monotonic_now, self.done)
            eta = (self.total - self.done) / rate if self.total > self.done and rate > 0 else None
            progress = Progress(
                fraction=fraction,
                stage=self.stage,
                done=self.done,
                total=self.total,
                current_item=self.current_item,
                rate=rate,
                eta_s=eta,
            )
        return dataclasses.replace(
            job, progress=progress, result=dict(self.result), cancel_requested=self.cancel_requested
        )

    def next_snapshot(self, monotonic_now: float, wall_now: float) -> Job | None:
        """Folds the raw progress into a new published snapshot (next seq), or None if there is nothing new to
        publish or a state change is being written (whose seq must come first)."""
        if not self.dirty or self.busy or self.job.state is not JobState.RUNNING:
            return None
        self.job = dataclasses.replace(self.snapshot(monotonic_now), seq=self.job.seq + 1, update_time=wall_now)
        self.dirty = False
        return self.job

    def request_cancel(self) -> bool:
        """Marks the job for cancellation; False if it already was."""
        if self.cancel_requested:
            return False
        self.cancel_requested = True
        self.dirty = True
        return True

    def stop(self, reason: StopReason) -> bool:
        """Records why the handler is being interrupted (the first reason wins) and cancels its task. Returns
        whether the handler was actually interrupted (False if it had already finished, or a reason was set)."""
        if self.stop_reason is not None:
            return False
        self.stop_reason = reason
        task = self.handler_task
        if task is not None and task.done():
            return False
        self.interrupted = True
        if task is not None:
            task.cancel()
        return True

    def adopt(self, job: Job) -> None:
        """Makes `job` the published snapshot (after a state change), resetting raw progress to match it."""
        self.job = job
        self.stage = job.progress.stage
        self.done = job.progress.done
        self.total = job.progress.total
        self.current_item = job.progress.current_item
        self.dirty = False


class RunContext:
    """The JobContext a handler gets: writes go to the LiveJob and poke the engine's publish throttle."""

    def __init__(self, live: LiveJob, on_change: Callable[[], None], children: ChildJobs) -> None:
        self._live = live
        self._on_change = on_change
        self._children = children

    @property
    def parent_id(self) -> str:
        return self._live.job.parent_id

    @property
    def children(self) -> ChildJobs:
        return self._children

    @property
    def claim(self) -> Claim:
        job = self._live.job
        return Claim(job.id, job.owner, job.epoch)

    @property
    def job_id(self) -> str:
        return self._live.id

    @property
    def spec(self) -> Mapping[str, Any]:
        return self._live.job.spec

    def report(
        self,
        *,
        stage: Stage | None = None,
        done: int | None = None,
        total: int | None = None,
        current_item: str | None = None,
    ) -> None:
        if not self._live.accepts_reports:
            return  # late reports (e.g. from a straggling helper task) cannot change a finished job
        self._live.report(stage=stage, done=done, total=total, current_item=current_item)
        self._on_change()

    def set_result(self, result: Mapping[str, int]) -> None:
        if not self._live.accepts_reports:
            return
        self._live.result = {str(k): int(v) for k, v in result.items()}
        self._live.dirty = True
        self._on_change()
