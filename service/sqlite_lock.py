"""One server per SQLite file: an exclusive lock on a lock file beside the database.

A server takes `SqliteLock.acquire(db_path)` before it opens any store, and holds it for its whole life. The lock is
`flock(LOCK_EX | LOCK_NB)` on `<db>.lock` (beside the database file, symlinks resolved), on a file descriptor kept
open until `release()`. The kernel drops the lock when that descriptor is closed, so when the process dies, even by
`kill -9`, the lock is free at once and nothing needs cleaning up: a lock file left behind with no holder is simply
locked again by the next server. The file is never deleted (deleting it would let two servers lock two different
inodes of the same name).

The holder writes JSON `{"pid", "address", "started"}` into the file after locking, and rewrites it with
`update_address()` once its port is bound (port 0 picks one, so the address is unknown until then). A refused
opener reads it to say who holds the database; an empty or half-written file gives "pid unknown".

Why not SQLite's own locking (`PRAGMA locking_mode=EXCLUSIVE`)? The server itself opens several connections to the
file (the job store, the library, ad-hoc readers), and an exclusive locking mode would lock its own connections out
as well as other servers. A lock file also lets the refusal name the other server.

Every file operation runs in a thread (`asyncio.to_thread`) so the event loop never blocks on the file system.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


def lock_path_for(db_path: Path) -> Path:
    """The lock file of a database: `<db>.lock` beside the real file, so a symlinked --db finds the same lock."""
    real = Path(os.path.realpath(db_path))
    return real.with_name(real.name + ".lock")


@dataclass(frozen=True, slots=True)
class LockHolder:
    """What the holder wrote into the lock file; any field may be missing if the file is empty or torn."""

    pid: int | None = None
    address: str | None = None
    started: str | None = None

    @classmethod
    def parse(cls, raw: bytes) -> LockHolder:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        pid, address, started = data.get("pid"), data.get("address"), data.get("started")
        return cls(
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
            address=address if isinstance(address, str) and address else None,
            started=started if isinstance(started, str) and started else None,
        )

    def describe(self) -> str:
        if self.pid is None:
            return "pid unknown"
        parts = [f"pid {self.pid}"]
        parts.append(f"listening on {self.address}" if self.address else "starting, not listening yet")
        if self.started:
            parts.append(f"since {self.started}")
        return ", ".join(parts)


class DatabaseInUse(RuntimeError):
    """Another server holds the database's lock. str() is the message for the operator."""

    def __init__(self, db_path: Path, holder: LockHolder) -> None:
        self.db_path = db_path
        self.holder = holder
        super().__init__(
            f"{db_path} is in use by another reelscan server ({holder.describe()}); "
            "one server per SQLite file: stop that server, give this one another --db, or use PostgreSQL "
            "(--db postgresql://...) for several replicas"
        )


def _payload(address: str | None, started: str) -> bytes:
    return (json.dumps({"pid": os.getpid(), "address": address, "started": started}) + "\n").encode("utf-8")


def _write(fd: int, payload: bytes) -> None:
    # Written over the old content, then cut to length: a reader sees the old or the new text, or at worst a torn
    # mix, never an empty file between a truncate and a write.
    os.pwrite(fd, payload, 0)
    os.ftruncate(fd, len(payload))
    os.fsync(fd)


def _read(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, min(size, 64 * 1024), 0) if size else b""


class SqliteLock:
    """The exclusive lock of one SQLite database, held by this process until `release()`."""

    def __init__(self, db_path: Path, path: Path, fd: int, started: str) -> None:
        self.db_path = db_path
        self.path = path
        self.started = started
        self._fd: int | None = fd
        self._address: str | None = None

    @classmethod
    async def acquire(cls, db_path: Path) -> SqliteLock:
        """Takes the lock of `db_path` at once or raises DatabaseInUse naming the holder. Never waits."""
        path = lock_path_for(db_path)
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        fd = await asyncio.to_thread(cls._open_locked, db_path, path, started)
        return cls(db_path, path, fd, started)

    @staticmethod
    def _open_locked(db_path: Path, path: Path, started: str) -> int:
        # No O_TRUNC: if another server holds the lock, its record must survive this open to be read.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise DatabaseInUse(db_path, LockHolder.parse(_read(fd))) from None
            _write(fd, _payload(None, started))
        except BaseException:
            os.close(fd)  # closing also drops the lock if it was taken
            raise
        return fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    @property
    def address(self) -> str | None:
        return self._address

    async def update_address(self, address: str) -> None:
        """Records the address the server actually listens on (call once the port is bound)."""
        if self._fd is None:
            raise RuntimeError(f"lock {self.path} is not held")
        self._address = address
        await asyncio.to_thread(_write, self._fd, _payload(address, self.started))

    async def release(self) -> None:
        """Drops the lock (idempotent). The lock file stays, describing its last holder."""
        fd, self._fd = self._fd, None
        if fd is not None:
            await asyncio.to_thread(self._close, fd)

    @staticmethod
    def _close(fd: int) -> None:
        try:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    async def __aenter__(self) -> SqliteLock:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()
