"""Children of a running job, as its handler sees them (handler.ChildJobs), on top of the store.

A parent creates its children in one fenced store step (with its plan), so a coordinator that crashed half-way
left either all of them or none, and its successor adopts what is there. Children are ordinary jobs: any server
with a free slot claims them; their ids are the parent's with a suffix, so they sort and read as a family.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reelscan.service.jobs.handler import JobLost
from reelscan.service.jobs.live import LiveJob
from reelscan.service.jobs.model import Job, JobState, Progress, Stage
from reelscan.service.jobs.store import JobStore


def child_id(parent_id: str, index: int) -> str:
    return f"{parent_id}-{index + 1:03d}"


def parent_of(job_id: str) -> str:
    """The parent's id if `job_id` has the form of a child's, else "" (change events carry ids only)."""
    parent, dash, number = job_id.rpartition("-")
    return parent if dash and number.isdigit() else ""


class StoreChildJobs:
    def __init__(
        self,
        store: JobStore,
        live: LiveJob,
        *,
        running_here: Callable[[str], LiveJob | None],
        release_slot: Callable[[LiveJob], None],
    ) -> None:
        self._store = store
        self._live = live
        self._running_here = running_here
        self._release_slot = release_slot

    async def spawn(self, plan: Mapping[str, Any], payloads: Sequence[Mapping[str, Any]]) -> list[Job]:
        parent = self._live.job
        now = time.time()
        children = [
            (
                Job(
                    id=child_id(parent.id, i),
                    kind=parent.kind,
                    state=JobState.PENDING,
                    spec={**parent.spec, "shard_index": i, "shard_count": len(payloads)},
                    timeout_s=parent.timeout_s,
                    create_time=now,
                    update_time=now,
                    seq=1,
                    progress=Progress(stage=Stage.QUEUED),
                    parent_id=parent.id,
                ),
                payload,
            )
            for i, payload in enumerate(payloads)
        ]
        stored = await self._store.spawn_children(parent, plan, children)
        if stored is None:
            raise JobLost(f"job {parent.id} is no longer owned by this server")
        return stored

    async def payload(self) -> Mapping[str, Any] | None:
        return await self._store.get_payload(self._live.id)

    async def current(self) -> list[Job]:
        children = await self._store.list_children(self._live.id)
        for i, child in enumerate(children):
            here = self._running_here(child.id)
            if here is not None and here.job.state is child.state:
                children[i] = here.job  # fresher progress than the last checkpoint
        return children

    async def changed(self, timeout_s: float) -> None:
        event = self._live.children_changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await event.wait()
        event.clear()

    def release_slot(self) -> None:
        self._release_slot(self._live)
