"""The JobStore interface: how the engine persists jobs, independent of the database behind it.

The engine is the only writer for the jobs it runs and keeps their live state in memory; the store holds the
durable copy. Today that is SQLite (sqlite_store.py); a PostgreSQL store for several replicas can implement the
same protocol without touching the engine.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from reelscan.service.jobs.model import Job, JobKind, JobState


class JobStore(Protocol):
    async def insert(self, job: Job) -> None:
        """Stores a new job (any state; recovery tests and imports insert non-PENDING rows too)."""
        ...

    async def save(self, job: Job) -> bool:
        """Writes a state change of an active job, in full. Returns False (and writes nothing) if the stored row is
        already terminal or gone, so a late writer can never resurrect a finished job."""
        ...

    async def checkpoint(self, job: Job) -> None:
        """Writes the progress of a RUNNING job. Ignored unless the stored row is still RUNNING with a lower seq,
        so a checkpoint that lands late never overwrites a newer snapshot or a state change."""
        ...

    async def get(self, job_id: str) -> Job | None: ...

    async def list_active(self) -> list[Job]:
        """Every PENDING or RUNNING job, oldest first (for restart recovery)."""
        ...

    async def list_page(
        self, *, states: Collection[JobState], kinds: Collection[JobKind], page_size: int, page_token: str
    ) -> tuple[list[Job], str]:
        """One page of jobs, newest first; empty collections mean no filter. Returns the next page's token ("" on
        the last page). Raises InvalidArgument for a malformed token or one issued for other filters."""
        ...

    async def list_finished_before(self, cutoff: float, limit: int) -> list[Job]:
        """Terminal jobs that finished before `cutoff` (Unix seconds), oldest first (for retention pruning)."""
        ...

    async def delete(self, job_id: str) -> bool:
        """Deletes a terminal job; False if there is no such terminal job."""
        ...

    async def close(self) -> None: ...
