"""The contract between the job engine and the work it runs.

The engine knows nothing of scanning: a job kind registers a JobHandler, and the engine calls `run(ctx)` in its own
asyncio task. The handler reports progress through the context and stores partial results there as it goes.
The engine owns state, persistence, rate/ETA, timeouts and fan-out to watchers.

Cancellation and timeouts cancel the handler's task (asyncio.CancelledError at its next await). A handler must
release what it holds in `finally` blocks (e.g. kill in-flight probe workers) and re-raise the cancellation;
whatever it recorded with `set_result` before that is kept in the job's terminal snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from reelscan.service.jobs.model import Job, Stage


class ChildJobs(Protocol):
    """A job's children: jobs of their own (claimed, leased and recovered like any job, by any server) that the
    parent coordinates, e.g. the shards of a big scan."""

    async def spawn(self, plan: Mapping[str, Any], payloads: Sequence[Mapping[str, Any]]) -> list[Job]:
        """Creates one PENDING child per payload and stores the parent's `plan`, atomically. Idempotent: if the
        children exist already (this job ran before and was taken over), those are returned and nothing changes.
        Raises JobLost if this server no longer owns the job."""
        ...

    async def payload(self) -> Mapping[str, Any] | None:
        """What was stored for this job: for a child, the work its parent gave it; for a parent, the plan an
        earlier run of it stored with its children. None if nothing."""
        ...

    async def current(self) -> list[Job]:
        """The children as they are now (in creation order)."""
        ...

    async def changed(self, timeout_s: float) -> None:
        """Returns when a child's state or stored progress changed (on any server), or after `timeout_s`."""
        ...

    def release_slot(self) -> None:
        """While it only waits for its children, this job stops counting toward the server's concurrent-job limit
        (otherwise a parent could hold the last slot its own children need)."""
        ...


class JobLost(Exception):
    """This server no longer owns the job (its lease ended and another server took it over)."""


@dataclass(frozen=True, slots=True)
class Claim:
    """Which claim of a job a server runs it under: what fences the job's own writes (store.py), and the writes
    its handler makes elsewhere in the same database (a scan's library batches)."""

    job_id: str
    owner: str
    epoch: int


class JobContext(Protocol):
    """What a running handler may do to its job. Every method is cheap and non-blocking (in-memory)."""

    @property
    def job_id(self) -> str: ...

    @property
    def spec(self) -> Mapping[str, Any]:
        """The job's kind-specific request, as stored at submission."""
        ...

    def report(
        self,
        *,
        stage: Stage | None = None,
        done: int | None = None,
        total: int | None = None,
        current_item: str | None = None,
    ) -> None:
        """Records progress. `total=0` means unknown: counts are shown, `progress` holds where it was.

        When the total is known, progress becomes done/total (never decreasing; held below 1.0 until success).
        Omitted arguments keep their previous values, except that a new stage resets done/total to 0.
        Updates reach watchers and storage at a bounded rate, coalesced by the engine.
        """
        ...

    def set_result(self, result: Mapping[str, int]) -> None:
        """Replaces the job's result counts (partial while running, final at the end)."""
        ...

    @property
    def parent_id(self) -> str:
        """The job this one is a child of ("" for a job of its own)."""
        ...

    @property
    def children(self) -> ChildJobs: ...

    @property
    def claim(self) -> Claim | None:
        """The claim this run holds: writes fenced on it land only while it still holds (None: unfenced)."""
        ...


class JobHandler(Protocol):
    """Runs jobs of one kind."""

    async def run(self, ctx: JobContext) -> None:
        """Does the job's work. Returning ends it SUCCEEDED; raising ReelscanError or any other exception ends it
        FAILED with that message; being cancelled ends it CANCELLED or TIMED_OUT as the engine decided."""
        ...

    async def on_recovered(self, job_id: str, spec: Mapping[str, Any]) -> None:
        """Called at start-up for a job that was RUNNING when the server died, before the engine resolves it.
        Lets the handler clean up half-done state (may do nothing)."""
        ...

    async def on_deleted(self, job_id: str) -> None:
        """Called when a terminal job is deleted (e.g. to drop its scan errors)."""
        ...
