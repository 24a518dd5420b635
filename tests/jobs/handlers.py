"""Job handlers with known work, and small async helpers, for engine tests."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from reelscan.service.jobs.handler import JobContext
from reelscan.service.jobs.model import Job, Stage


class SteppedHandler:
    """`total` items of work per job, each finished when the test calls `step(job_id)` (or, with `auto_delay_s`,
    after that long). Reports a discovery stage with an unknown total first, then done/total per item, with the
    partial result `{"probed": n}` after each item. Records runs, cancellations, recoveries and deletions."""

    def __init__(
        self, total: int = 4, *, auto_delay_s: float | None = None, fail_with: Exception | None = None
    ) -> None:
        self.total = total
        self.auto_delay_s = auto_delay_s
        self.fail_with = fail_with
        self.runs: list[str] = []
        self.cancelled: list[str] = []
        self.finished: list[str] = []
        self.recovered: list[tuple[str, Mapping[str, Any]]] = []
        self.deleted: list[str] = []
        self._gates: defaultdict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(0))
        self._started: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def step(self, job_id: str, n: int = 1) -> None:
        for _ in range(n):
            self._gates[job_id].release()

    async def started(self, job_id: str, limit_s: float = 5.0) -> None:
        async with asyncio.timeout(limit_s):
            await self._started[job_id].wait()

    async def run(self, ctx: JobContext) -> None:
        self.runs.append(ctx.job_id)
        self._started[ctx.job_id].set()
        ctx.report(stage=Stage.DISCOVERING, done=0)
        ctx.report(stage=Stage.PROBING, done=0, total=self.total)
        try:
            for i in range(self.total):
                if self.auto_delay_s is not None:
                    await asyncio.sleep(self.auto_delay_s)
                else:
                    await self._gates[ctx.job_id].acquire()
                ctx.report(done=i + 1, current_item=f"item-{i}")
                ctx.set_result({"probed": i + 1})
        except asyncio.CancelledError:
            self.cancelled.append(ctx.job_id)
            raise
        if self.fail_with is not None:
            raise self.fail_with
        ctx.report(stage=Stage.FINALIZING)
        self.finished.append(ctx.job_id)

    async def on_recovered(self, job_id: str, spec: Mapping[str, Any]) -> None:
        self.recovered.append((job_id, spec))

    async def on_deleted(self, job_id: str) -> None:
        self.deleted.append(job_id)


async def eventually(predicate: Callable[[], bool | Awaitable[bool]], limit_s: float = 5.0, what: str = "") -> None:
    """Polls `predicate` until it holds; fails the test after `limit_s` seconds."""
    deadline = time.monotonic() + limit_s
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.01)


class Recorder:
    """Consumes a watch stream in a task, recording every snapshot it yields."""

    def __init__(self, stream: AsyncIterator[Job]) -> None:
        self.seen: list[Job] = []
        self.task = asyncio.create_task(self._consume(stream))

    async def _consume(self, stream: AsyncIterator[Job]) -> None:
        async for job in stream:
            self.seen.append(job)

    @property
    def last(self) -> Job | None:
        return self.seen[-1] if self.seen else None

    async def done(self, limit_s: float = 5.0) -> list[Job]:
        async with asyncio.timeout(limit_s):
            await self.task
        return self.seen
