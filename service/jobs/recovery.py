"""Recovery of jobs whose server died: the store applies the crash rules to RUNNING jobs whose owner's lease has
expired (model.recover_crashed), and their handlers are told so they can clean up half-done work. Runs at start
and then periodically, so a peer's crash is noticed about one lease TTL after its last heartbeat."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from reelscan.service.jobs.handler import JobHandler
from reelscan.service.jobs.model import Job, JobKind
from reelscan.service.jobs.store import JobStore
from reelscan.service.telemetry.events import NO_TELEMETRY, Telemetry

log = logging.getLogger(__name__)


class Recovery:
    def __init__(
        self,
        store: JobStore,
        handlers: Mapping[JobKind, JobHandler],
        *,
        interval_s: float,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._store = store
        self._telemetry = telemetry
        self._handlers = handlers
        self._interval_s = interval_s

    async def recover_once(self) -> list[Job]:
        recovered = await self._store.recover_expired()
        for job in recovered:
            self._telemetry.job_recovered(job)  # logged (a WARNING) by the log telemetry
            handler = self._handlers.get(job.kind)
            if handler is None:
                continue
            try:
                await handler.on_recovered(job.id, job.spec)
            except Exception:
                log.exception("job %s: on_recovered failed", job.id)
        return recovered

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.recover_once()
            except Exception:
                log.exception("job recovery failed; will retry")
