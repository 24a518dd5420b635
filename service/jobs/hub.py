"""Fan-out of job snapshots to watchers, coalescing per watcher.

Each watcher owns one slot holding the newest snapshot it has not read yet, and an Event. Publishing overwrites
the slot and sets the Event: O(1) per watcher, never awaits, never queues. So a slow or stuck watcher costs one
slot of memory, never delays the job or other watchers, and reads the newest state when it wakes (latest wins).
Because the engine publishes the terminal snapshot last, a watcher always ends up holding it.
"""

from __future__ import annotations

import asyncio

from reelscan.service.errors import ResourceExhausted
from reelscan.service.jobs.model import Job
from reelscan.service.telemetry.events import NO_TELEMETRY, Telemetry


class Subscription:
    """One watcher's slot. Read `take()` after `event` is set."""

    __slots__ = ("_latest", "closed", "event", "job_id")

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.event = asyncio.Event()
        self.closed = False  # set when the hub shuts down: the watcher must stop
        self._latest: Job | None = None

    def offer(self, job: Job) -> None:
        self._latest = job
        self.event.set()

    def take(self) -> Job | None:
        """The newest snapshot published since the last take, if any."""
        self.event.clear()
        job, self._latest = self._latest, None
        return job


class WatchHub:
    """Registry of watchers per job, with a bound on the total. Waiters (WaitJob) get the same slots but are not
    watchers: they are neither counted nor bounded here (WaitJob is a unary call with a deadline)."""

    def __init__(self, max_watchers: int, telemetry: Telemetry = NO_TELEMETRY) -> None:
        self._max = max_watchers
        self._telemetry = telemetry
        self._by_job: dict[str, set[Subscription]] = {}
        self._waiters: dict[str, set[Subscription]] = {}
        self._total = 0
        self._closed = False

    @property
    def total(self) -> int:
        return self._total

    def count(self, job_id: str) -> int:
        return len(self._by_job.get(job_id, ()))

    def followed(self) -> list[str]:
        """Ids of the jobs someone is watching or waiting for."""
        return list(self._by_job.keys() | self._waiters.keys())

    def is_followed(self, job_id: str) -> bool:
        return job_id in self._by_job or job_id in self._waiters

    def wait_on(self, job_id: str) -> Subscription:
        sub = Subscription(job_id)
        sub.closed = self._closed
        self._waiters.setdefault(job_id, set()).add(sub)
        return sub

    def stop_waiting(self, sub: Subscription) -> None:
        subs = self._waiters.get(sub.job_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._waiters[sub.job_id]

    def subscribe(self, job_id: str) -> Subscription:
        if self._total >= self._max:
            raise ResourceExhausted(f"too many open WatchJob streams (limit {self._max}); try again later")
        sub = Subscription(job_id)
        if self._closed:
            sub.closed = True
        self._by_job.setdefault(job_id, set()).add(sub)
        self._total += 1
        self._telemetry.watchers_open(self._total)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._by_job.get(sub.job_id)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        self._total -= 1
        self._telemetry.watchers_open(self._total)
        if not subs:
            del self._by_job[sub.job_id]

    def publish(self, job: Job) -> None:
        for sub in self._by_job.get(job.id, ()):
            sub.offer(job)
        for sub in self._waiters.get(job.id, ()):
            sub.offer(job)

    def close(self) -> None:
        """Wakes every watcher with `closed` set, so streams end at shutdown instead of hanging."""
        self._closed = True
        for subs in (*self._by_job.values(), *self._waiters.values()):
            for sub in subs:
                sub.closed = True
                sub.event.set()
