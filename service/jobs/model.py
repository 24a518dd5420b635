"""The job model and its state machine.

A Job is an immutable snapshot; every change makes a new one through the functions below, which enforce the
legal transitions (PENDING -> RUNNING -> terminal; PENDING -> CANCELLED). Terminal states are final.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reelscan.service.errors import Code

MAX_CRASH_RECOVERIES = 3
# Progress published after the last checkpoint is not in the store, so after a crash the stored seq may be behind
# what watchers saw. Jumping this far ahead keeps seq strictly increasing across the crash (checkpoints run every
# second and publishes are at most ~10/s, so the real gap is tens).
RECOVERY_SEQ_GAP = 1_000_000
# What a job ends with when it crashed its server MAX_CRASH_RECOVERIES times (a google.rpc.Code number).
ABORTED = int(Code.ABORTED)


class JobState(enum.IntEnum):
    """Lifecycle state; the values equal reelscan.v1.JobState so the API layer converts by value."""

    PENDING = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    CANCELLED = 5
    TIMED_OUT = 6

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT})

_ALLOWED: Mapping[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.RUNNING, JobState.CANCELLED, JobState.FAILED}),
    JobState.RUNNING: TERMINAL_STATES,
}


class JobKind(enum.IntEnum):
    """What a job does; values equal reelscan.v1.JobKind."""

    SCAN = 1


class Stage(enum.IntEnum):
    """Which part of its work a job is in; values equal reelscan.v1.JobStage."""

    QUEUED = 1
    DISCOVERING = 2
    PROBING = 3
    FINALIZING = 4
    DONE = 5


class IllegalTransition(RuntimeError):
    """A state change the state machine does not allow; a programming error, never a client error."""


@dataclass(frozen=True, slots=True)
class JobCounts:
    """Stored jobs by state, every server's (states with none are left out): jobs of their own, which users started
    and --max-queued-jobs bounds, apart from the shards of sharded scans, which the bound leaves out."""

    jobs: Mapping[JobState, int] = field(default_factory=dict)
    shards: Mapping[JobState, int] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: Iterable[tuple[int, Any, int]]) -> JobCounts:
        """From a store's (state, is a shard, count) rows: SELECT state, parent_id <> '', COUNT(*) ... GROUP BY."""
        jobs: dict[JobState, int] = {}
        shards: dict[JobState, int] = {}
        for state, shard, count in rows:
            (shards if shard else jobs)[JobState(state)] = int(count)
        return cls(jobs, shards)


@dataclass(frozen=True, slots=True)
class JobError:
    """Why a job failed or timed out: a google.rpc.Code value and a message."""

    code: int
    message: str


@dataclass(frozen=True, slots=True)
class Progress:
    """Live progress of a job. `fraction` never decreases and is 1.0 exactly on success."""

    fraction: float = 0.0
    stage: Stage = Stage.QUEUED
    done: int = 0
    total: int = 0  # 0 while unknown
    current_item: str = ""
    rate: float = 0.0  # items per second, computed by the engine
    eta_s: float | None = None  # seconds left, computed by the engine; None when unknown


@dataclass(frozen=True, slots=True)
class Job:
    """An immutable snapshot of a job. Times are Unix seconds (float)."""

    id: str
    kind: JobKind
    state: JobState
    spec: Mapping[str, Any]  # kind-specific request, JSON-serialisable (for scans: ScanSpec fields)
    timeout_s: float
    create_time: float
    update_time: float
    seq: int = 0
    progress: Progress = field(default_factory=Progress)
    start_time: float | None = None
    finish_time: float | None = None
    cancel_requested: bool = False
    result: Mapping[str, int] = field(default_factory=dict)  # kind-specific counts (for scans: ScanResult fields)
    error: JobError | None = None
    dedup_key: str = ""  # jobs with the same non-empty key are not queued twice (e.g. a scan of the same root)
    recoveries: int = 0  # times a server crash interrupted this job while it ran (see requeue_interrupted)
    # Ownership: the server that claimed the job (kept after it ends, so one can tell where it ran; cleared when it
    # goes back to PENDING), and the claim's epoch, bumped by every claim. The owner's writes are fenced on both.
    owner: str = ""
    owner_address: str = ""  # where the owner listens (HOST:PORT), for operators
    epoch: int = 0
    # A child job (e.g. one shard of a big scan) names the job it belongs to: its parent coordinates it, cancelling
    # or deleting the parent cascades to it, and default listings show only jobs without a parent.
    parent_id: str = ""

    @property
    def terminal(self) -> bool:
        return self.state.terminal


def transition(job: Job, new_state: JobState, *, now: float, error: JobError | None = None) -> Job:
    """Returns `job` moved to `new_state`, or raises IllegalTransition."""
    if new_state not in _ALLOWED.get(job.state, frozenset()):
        raise IllegalTransition(f"job {job.id}: {job.state.name} -> {new_state.name} is not allowed")
    progress = job.progress
    if new_state is JobState.RUNNING:
        progress = dataclasses.replace(
            progress, stage=Stage.DISCOVERING if progress.stage is Stage.QUEUED else progress.stage
        )
    elif new_state.terminal:
        fraction = 1.0 if new_state is JobState.SUCCEEDED else progress.fraction
        progress = dataclasses.replace(
            progress,
            fraction=fraction,
            stage=Stage.DONE,
            current_item="",
            rate=0.0 if new_state is not JobState.SUCCEEDED else progress.rate,
            eta_s=None,
        )
    return dataclasses.replace(
        job,
        state=new_state,
        seq=job.seq + 1,
        update_time=now,
        progress=progress,
        start_time=now if new_state is JobState.RUNNING else job.start_time,
        finish_time=now if new_state.terminal else job.finish_time,
        error=error if error is not None else job.error,
    )


def claim(job: Job, owner: str, *, now: float, address: str = "") -> Job:
    """PENDING -> RUNNING for `owner`, with a new lease epoch: the only way a job starts running."""
    running = transition(job, JobState.RUNNING, now=now)
    return dataclasses.replace(running, owner=owner, owner_address=address, epoch=job.epoch + 1)


def recover_crashed(job: Job, *, now: float) -> Job:
    """What a RUNNING job becomes when its owner died (its lease expired): the crash rules.

    A job whose cancellation had been requested ends CANCELLED; one interrupted MAX_CRASH_RECOVERIES times ends
    FAILED (ABORTED), so a job that kills its server cannot crash-loop the fleet forever; any other is queued again
    (PENDING). Its seq jumps by RECOVERY_SEQ_GAP so it stays strictly increasing across the crash.
    """
    job = dataclasses.replace(job, seq=job.seq + RECOVERY_SEQ_GAP)
    if job.cancel_requested:
        return transition(job, JobState.CANCELLED, now=now)
    if job.recoveries + 1 >= MAX_CRASH_RECOVERIES:
        message = (
            f"the server stopped unexpectedly while this job ran, {job.recoveries + 1} times; "
            "it is not run again (it may be what crashes the server)"
        )
        return transition(job, JobState.FAILED, now=now, error=JobError(ABORTED, message))
    return requeue_interrupted(job, now=now, crashed=True)


def requeue_interrupted(job: Job, *, now: float, crashed: bool) -> Job:
    """RUNNING -> PENDING for a job whose run the server itself interrupted (shutdown or crash), so it runs again.

    This is the one way back from RUNNING, kept out of `transition` so no client-driven path can take it. Scans
    are idempotent, so running an interrupted job again from the start is safe. `crashed` counts the interruption
    toward the engine's limit on crash-loops. The fraction is kept so progress never goes backwards; the counts
    belong to the interrupted run and restart from zero. The owner is kept here, for the store's fence; the store
    clears it when it writes the PENDING row.
    """
    if job.state is not JobState.RUNNING:
        raise IllegalTransition(f"job {job.id}: only a RUNNING job can be re-queued, not {job.state.name}")
    return dataclasses.replace(
        job,
        state=JobState.PENDING,
        seq=job.seq + 1,
        update_time=now,
        progress=Progress(fraction=job.progress.fraction, stage=Stage.QUEUED),
        start_time=None,
        recoveries=job.recoveries + 1 if crashed else job.recoveries,
    )
