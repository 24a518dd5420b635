"""LISTEN on a dedicated, unpooled connection, with reconnects.

Notifications sent while the listener is disconnected are lost (PostgreSQL does not queue them for a session that
is gone), so after every (re)connect `on_resync` is called: receivers re-read whatever they follow. While
connected, the connection is probed with `SELECT 1` whenever it has been quiet for PROBE_S, so a connection that
died silently (a cut network) is noticed within seconds, not at the next TCP timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import psycopg

from reelscan.service.pg.database import PgDatabase

log = logging.getLogger(__name__)
PROBE_S = 2.0
RECONNECT_DELAYS_S = (0.1, 0.25, 0.5, 1.0, 2.0)


class PgListener:
    def __init__(
        self, db: PgDatabase, channel: str, on_payload: Callable[[str], None], on_resync: Callable[[], None]
    ) -> None:
        self._db = db
        self._channel = channel
        self._on_payload = on_payload
        self._on_resync = on_resync
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Connects and starts listening; raises if the first connection fails (start-up fails fast)."""
        await self._connect()
        self._task = asyncio.create_task(self._run(), name=f"reelscan-listen-{self._channel}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._disconnect()

    async def _connect(self) -> None:
        conn = await self._db.connect()
        await conn.execute(f"LISTEN {self._channel}")
        self._conn = conn
        self._connected.set()

    async def _disconnect(self) -> None:
        self._connected.clear()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                if self._conn is None:
                    await self._connect()
                    log.warning("change listener reconnected to PostgreSQL at %s", self._db.where)
                failures = 0
                self._on_resync()  # anything may have changed while we were away
                await self._listen()
            except (psycopg.Error, OSError) as error:
                if self.connected:
                    log.warning("change listener lost its PostgreSQL connection (%s); reconnecting", error)
                await self._disconnect()
                self._on_resync()  # receivers fall back to polling harder while we are away
                await asyncio.sleep(RECONNECT_DELAYS_S[min(failures, len(RECONNECT_DELAYS_S) - 1)])
                failures += 1

    async def _listen(self) -> None:
        assert self._conn is not None
        while True:
            got_any = False
            async for notify in self._conn.notifies(timeout=PROBE_S):
                got_any = True
                try:
                    self._on_payload(notify.payload)
                except Exception:
                    log.exception("change listener: handling a notification failed")
            if not got_any:
                await self._conn.execute("SELECT 1")
