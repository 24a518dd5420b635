"""This server's lease on its jobs: registered at start, renewed by heartbeats, given up at shutdown.

A server may write to the jobs it claimed only while it can prove its lease is valid. The proof is local: a
renewal sent at monotonic time t makes the lease good until t + ttl here, which is never later than the expiry the
store recorded (the store computed it after receiving the renewal). When that local deadline passes without a
renewal (the store is unreachable, or the process was frozen), or the store says the lease is gone (others may
already have recovered its jobs), `on_lost` is called: the engine stops every job it runs without writing. The
keeper then starts over under a fresh owner id, so jobs left behind under the old id stay recoverable by others.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Callable

from reelscan.service.jobs.store import JobStore, Owner

log = logging.getLogger(__name__)


def new_owner_id() -> str:
    return uuid.uuid4().hex


class LeaseKeeper:
    def __init__(
        self, store: JobStore, owner: Owner, *, ttl_s: float, interval_s: float, on_lost: Callable[[], None]
    ) -> None:
        if not 0 < interval_s < ttl_s:
            raise ValueError(f"heartbeat interval {interval_s}s must be positive and shorter than the lease {ttl_s}s")
        self._store = store
        self._owner = owner
        self._ttl_s = ttl_s
        self._interval_s = interval_s
        self._on_lost = on_lost
        self._valid_until = float("-inf")  # monotonic
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._suspended = False
        self._registered = False

    @property
    def owner(self) -> Owner:
        return self._owner

    def set_address(self, address: str) -> None:
        """Where this server can be reached (known once its port is bound; recorded with the next registration)."""
        self._owner = dataclasses.replace(self._owner, address=address)

    @property
    def valid(self) -> bool:
        return asyncio.get_running_loop().time() < self._valid_until

    async def start(self) -> None:
        await self._register()
        self._task = asyncio.create_task(self._heartbeats(), name="reelscan-lease")

    async def close(self, *, release: bool = True) -> None:
        """Stops heartbeating; `release` ends the lease in the store (after the jobs were handed back)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._watchdog is not None:
            self._watchdog.cancel()
        if release:
            try:
                await self._store.release_owner(self._owner.id)
            except Exception:
                log.warning("could not end this server's lease; it expires by itself", exc_info=True)

    def suspend(self) -> None:
        """Stops heartbeats and the local deadline, as if the process froze (for tests of what others then do)."""
        self._suspended = True
        if self._watchdog is not None:
            self._watchdog.cancel()

    async def _register(self) -> None:
        sent = asyncio.get_running_loop().time()
        await self._store.register_owner(self._owner, self._ttl_s)
        self._registered = True
        self._extend(sent)

    def _extend(self, sent: float) -> None:
        self._valid_until = sent + self._ttl_s
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog = asyncio.get_running_loop().call_at(self._valid_until, self._expired)

    def _expired(self) -> None:
        if not self._suspended:
            self._lose("expired without a renewal")

    def _lose(self, why: str) -> None:
        """Gives up the current owner id for good: its jobs are stopped here and left for recovery (by another
        server, or by this one's recovery loop), and a fresh id is registered by the next heartbeat."""
        log.error("job lease %s of this server %s: stopping its jobs", self._owner.id, why)
        self._valid_until = float("-inf")
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._owner = dataclasses.replace(self._owner, id=new_owner_id())
        self._registered = False
        self._on_lost()

    async def _heartbeats(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._interval_s)
            if self._suspended:
                continue
            try:
                if not self._registered:
                    await self._register()
                    log.warning("continuing under a new job lease %s", self._owner.id)
                    continue
                owner_id, sent = self._owner.id, loop.time()
                renewed = await self._store.renew_lease(owner_id, self._ttl_s)
            except Exception as error:  # transient: the local deadline decides when it is too late
                log.warning("job lease heartbeat failed (%s); retrying", error)
                continue
            if owner_id != self._owner.id:
                continue  # lost meanwhile (the local deadline passed during the call)
            if renewed:
                self._extend(sent)
            else:
                self._lose("was revoked (others may run its jobs now)")
