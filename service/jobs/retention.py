"""Retention: finished jobs (and, through their handlers, what belongs to them) are deleted once they are older
than the retention period."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from reelscan.service.jobs.handler import JobHandler
from reelscan.service.jobs.model import JobKind
from reelscan.service.jobs.store import JobStore
from reelscan.service.telemetry.events import NO_TELEMETRY, Telemetry

log = logging.getLogger(__name__)
PRUNE_BATCH = 500


class Retention:
    def __init__(
        self,
        store: JobStore,
        handlers: Mapping[JobKind, JobHandler],
        *,
        retention_s: float,
        interval_s: float | None,
        on_deleted: Callable[[str], None],
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._store = store
        self._telemetry = telemetry
        self._handlers = handlers
        self.retention_s = retention_s
        # Pruning is not urgent: a tenth of the retention period, within [50 ms, 10 min].
        self._interval_s = interval_s if interval_s is not None else min(max(retention_s / 10, 0.05), 600.0)
        self._on_deleted = on_deleted

    async def prune_expired(self) -> int:
        """Deletes terminal jobs that finished more than retention_s ago; returns how many."""
        cutoff = time.time() - self.retention_s
        pruned = 0
        while True:
            batch = await self._store.list_finished_before(cutoff, PRUNE_BATCH)
            deleted = 0
            for job in batch:
                handler = self._handlers.get(job.kind)
                try:
                    if handler is not None:
                        await handler.on_deleted(job.id)
                    if await self._store.delete(job.id):
                        deleted += 1
                        self._on_deleted(job.id)
                        self._telemetry.job_pruned(job)
                except Exception:
                    log.exception("could not prune job %s; will retry", job.id)
            pruned += deleted
            if len(batch) < PRUNE_BATCH or deleted == 0:
                return pruned

    async def run(self) -> None:
        while True:
            try:
                pruned = await self.prune_expired()
                if pruned:  # each job is logged by the log telemetry (job_pruned)
                    log.debug("pruned %d finished job(s) older than %gs", pruned, self.retention_s)
            except Exception:
                log.exception("job pruning failed; will retry")
            await asyncio.sleep(self._interval_s)
