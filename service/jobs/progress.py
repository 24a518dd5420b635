"""Progress of running jobs: snapshots published to watchers at a bounded rate, and checkpoints in the store.

A handler's reports only touch its LiveJob; the publish throttle turns them into snapshots (next seq) for the
watch hub, and every published snapshot pokes a slower checkpoint throttle that writes it to the store, so a
crash loses at most a checkpoint interval of progress and other servers' readers see it move. A checkpoint the
store refuses means the job is no longer ours: `on_lost` is told, and it stops the job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from reelscan.service.jobs.background import BackgroundTasks
from reelscan.service.jobs.hub import WatchHub
from reelscan.service.jobs.live import LiveJob
from reelscan.service.jobs.model import JobState
from reelscan.service.jobs.pacing import Throttle
from reelscan.service.jobs.store import JobStore
from reelscan.service.telemetry.events import NO_TELEMETRY, Telemetry

log = logging.getLogger(__name__)
# Each snapshot sent to a watcher costs ~50-80 us of event-loop time (gRPC send): a job's progress updates are spaced
# so that its watchers together receive at most this many per second, and the job itself keeps the loop.
MAX_WATCH_MESSAGES_PER_S = 2000


class ProgressPublisher:
    def __init__(
        self,
        store: JobStore,
        hub: WatchHub,
        background: BackgroundTasks,
        *,
        publish_interval_s: float,
        checkpoint_interval_s: float,
        on_lost: Callable[[LiveJob], None],
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._store = store
        self._telemetry = telemetry
        self._hub = hub
        self._background = background
        self._publish_interval_s = publish_interval_s
        self._checkpoint_interval_s = checkpoint_interval_s
        self._on_lost = on_lost

    def begin(self, live: LiveJob) -> None:
        """Sets up the throttles of a job that just started running here."""
        live.rate.reset()
        live.publisher = Throttle(
            lambda: max(self._publish_interval_s, self._hub.count(live.id) / MAX_WATCH_MESSAGES_PER_S),
            lambda: self.publish(live),
        )
        live.checkpointer = Throttle(self._checkpoint_interval_s, lambda: self.checkpoint_soon(live))

    def poke(self, live: LiveJob) -> None:
        """The handler reported something: publish soon."""
        if live.publisher is not None:
            live.publisher.poke()

    def publish(self, live: LiveJob) -> None:
        """Publishes the job's raw progress as a new snapshot now, unless there is nothing new."""
        job = live.next_snapshot(asyncio.get_running_loop().time(), time.time())
        if job is None:
            return
        self._hub.publish(job)
        if live.checkpointer is not None:
            live.checkpointer.poke()

    def checkpoint_soon(self, live: LiveJob) -> None:
        if live.checkpoint_task is not None and not live.checkpoint_task.done():
            live.checkpoint_again = True  # the running writer loops once more with the newest snapshot
            return
        live.checkpoint_task = self._background.spawn(self._write_checkpoints(live))

    async def _write_checkpoints(self, live: LiveJob) -> None:
        while True:
            live.checkpoint_again = False
            job = live.job
            if job.state is not JobState.RUNNING or live.stop_reason is not None:
                return
            started = time.perf_counter()
            try:
                written = await self._store.checkpoint(job)
                self._telemetry.db_write("jobs", "checkpoint", time.perf_counter() - started)
            except Exception:
                log.warning("job %s: progress checkpoint failed", live.id, exc_info=True)
                return
            if not written and live.job.state is JobState.RUNNING and live.stop_reason is None:
                self._on_lost(live)
                return
            if not live.checkpoint_again:
                return

    @staticmethod
    def quiet(live: LiveJob) -> None:
        """Cancels the job's timers (throttles, deadline, abandon timer)."""
        for throttle in (live.publisher, live.checkpointer):
            if throttle is not None:
                throttle.cancel()
        for timer in (live.deadline, live.abandon_timer):
            if timer is not None:
                timer.cancel()
