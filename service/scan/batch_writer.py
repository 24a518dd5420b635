"""Collects a scan's library writes and commits them in batches: one transaction per `max_rows` rows or per
`max_delay_s`, whichever comes first, from a task of its own.

Its own task, so that probing never waits for the database, and so that cancelling the scan (CancelJob, timeout)
does not cancel a transaction half-way: the scan's `finally` awaits `close()` under asyncio.shield and what was
probed is kept.
"""

from __future__ import annotations

import asyncio
import logging
import time

from reelscan.service.jobs.handler import Claim, JobLost
from reelscan.service.scan.library_model import ProbedFile, ScanErrorRecord
from reelscan.service.scan.library_store import LibraryStore
from reelscan.service.telemetry.events import NO_TELEMETRY, Telemetry

log = logging.getLogger(__name__)
# A batch is one transaction and every write in it is an upsert, so trying it again is safe: a dropped database
# connection (a PostgreSQL restart, a failover, a killed backend) or a lock held too long costs a few seconds of
# retries, not the scan. Past these, the failure is the scan's.
WRITE_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0)


class BatchWriter:
    def __init__(
        self,
        library: LibraryStore,
        max_rows: int = 200,
        max_delay_s: float = 0.1,
        *,
        telemetry: Telemetry = NO_TELEMETRY,
        fence: Claim | None = None,
    ) -> None:
        self._library = library
        self._fence = fence  # every batch lands only while the job's claim holds (LibraryStore.write_batch)
        self._telemetry = telemetry
        self._max_rows = max_rows
        self._max_delay_s = max_delay_s
        self._probed: list[ProbedFile] = []
        self._errors: list[ScanErrorRecord] = []
        self._unmissing: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._failure: BaseException | None = None

    @property
    def _pending(self) -> int:
        return len(self._probed) + len(self._errors) + len(self._unmissing)

    def add_probed(self, row: ProbedFile) -> None:
        self._probed.append(row)
        self._added()

    def add_error(self, error: ScanErrorRecord) -> None:
        self._errors.append(error)
        self._added()

    def add_unmissing(self, path: str) -> None:
        self._unmissing.append(path)
        self._added()

    def _added(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._pending >= self._max_rows:
            self._start_flush()
        elif self._timer is None and (self._task is None or self._task.done()):
            self._timer = asyncio.get_running_loop().call_later(self._max_delay_s, self._start_flush)

    def _start_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="reelscan-library-writer")

    async def _drain(self) -> None:
        # Rows added while a batch is being written wait for the next one: at once if a full batch has gathered,
        # else when max_delay_s has passed.
        while self._pending and self._failure is None:
            probed, errors, unmissing = self._probed, self._errors, self._unmissing
            self._probed, self._errors, self._unmissing = [], [], []
            for attempt, delay in enumerate((*WRITE_RETRY_DELAYS_S, None), start=1):
                started = time.perf_counter()
                try:
                    await self._library.write_batch(probed, errors, unmissing, fence=self._fence)
                    self._telemetry.db_write("library", "write_batch", time.perf_counter() - started)
                    break
                except Exception as error:
                    if delay is None or isinstance(error, JobLost):  # lost: no retry will ever land
                        self._failure = error
                        return
                    log.warning(
                        "library write of %d rows failed (attempt %d: %s); retrying in %gs",
                        len(probed) + len(errors) + len(unmissing),
                        attempt,
                        error,
                        delay,
                    )
                    await asyncio.sleep(delay)
            if self._pending < self._max_rows:
                break  # let the next rows gather for max_delay_s: batches written back to back shrink to a few rows
        if self._pending and self._failure is None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._max_delay_s, self._start_flush)

    async def close(self) -> None:
        """Writes whatever is pending and waits for it; raises the first write failure, if any."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while True:
            if self._task is not None:
                await self._task
            if not self._pending or self._failure is not None:
                break
            self._start_flush()
        if self._failure is not None:
            raise self._failure
