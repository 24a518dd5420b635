"""The change feed: small signals about committed job changes, fanned out to the listeners in this process.

An event says only which job changed and to what (id, seq, state, cancel flag); a listener that needs more reads
the row. That keeps a signal small enough for PostgreSQL's NOTIFY (8,000-byte payloads) and makes a lost signal
harmless once the listener re-reads: `resync` tells listeners that signals may have been missed (e.g. after a
database listener reconnected), so they re-read whatever they care about.

Delivery is synchronous and in order: listeners must only note the change and schedule work, never block.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from reelscan.service.jobs.model import Job, JobState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    job_id: str
    seq: int
    state: JobState
    cancel_requested: bool = False
    deleted: bool = False

    @classmethod
    def of(cls, job: Job, *, deleted: bool = False) -> ChangeEvent:
        return cls(job.id, job.seq, job.state, job.cancel_requested, deleted)


class ChangeListener(Protocol):
    def job_changed(self, event: ChangeEvent) -> None: ...

    def resync(self) -> None:
        """Signals may have been lost: re-read whatever is being followed."""
        ...


class ChangeFeed:
    """In-process fan-out of change events to subscribed listeners."""

    def __init__(self) -> None:
        self._listeners: list[ChangeListener] = []

    def subscribe(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: ChangeListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def emit(self, event: ChangeEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener.job_changed(event)
            except Exception:  # one broken listener must not keep the others (or the writer) from going on
                log.exception("change listener failed on %s", event)

    def emit_resync(self) -> None:
        for listener in list(self._listeners):
            try:
                listener.resync()
            except Exception:
                log.exception("change listener failed on resync")
