"""JobStore on SQLite through aiosqlite (WAL), on its own connection so job writes never interleave with the
library store's batched transactions.

One server per database file (the server holds sqlite_lock on it), so this store serves one process; several
engines on one store object still behave as replicas would (leases, claims, fencing), which is how the engine's
ownership tests run. Lease times are this machine's wall clock, which every owner on one file shares.

Rows carry an INTEGER PRIMARY KEY `ord` (insertion order) besides the opaque job id: it gives newest-first keyset
pagination a stable, unique key that page tokens can name, and "oldest first" claims an index to follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from reelscan.service import db
from reelscan.service.errors import InvalidArgument, ResourceExhausted
from reelscan.service.jobs import page_token as tokens
from reelscan.service.jobs.feed import ChangeEvent, ChangeFeed
from reelscan.service.jobs.job_rows import job_from_row, job_params
from reelscan.service.jobs.model import (
    TERMINAL_STATES,
    Job,
    JobCounts,
    JobKind,
    JobState,
    claim,
    recover_crashed,
    transition,
)
from reelscan.service.jobs.store import Owner, payload_from_text, payload_to_text

SCHEMA_COMPONENT = "jobs"
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_versions (
    component TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    ord INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: never reuse a pruned job's position in page tokens
    id TEXT NOT NULL UNIQUE,
    kind INTEGER NOT NULL,
    state INTEGER NOT NULL,
    spec TEXT NOT NULL,                      -- JSON
    timeout_s REAL NOT NULL,
    create_time REAL NOT NULL,
    update_time REAL NOT NULL,
    start_time REAL,
    finish_time REAL,
    seq INTEGER NOT NULL,
    fraction REAL NOT NULL,
    stage INTEGER NOT NULL,
    items_done INTEGER NOT NULL,
    items_total INTEGER NOT NULL,
    current_item TEXT NOT NULL,
    rate REAL NOT NULL,
    eta_s REAL,
    cancel_requested INTEGER NOT NULL,
    result TEXT NOT NULL,                    -- JSON object of counts
    error_code INTEGER,
    error_message TEXT,
    dedup_key TEXT NOT NULL,
    recoveries INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, ord);
CREATE INDEX IF NOT EXISTS jobs_by_finish ON jobs (finish_time) WHERE finish_time IS NOT NULL;
"""

_PENDING, _RUNNING = int(JobState.PENDING), int(JobState.RUNNING)

# Schema changes by the version they lead to; each list runs in the opening transaction.
_MIGRATIONS: dict[int, list[str]] = {
    2: [
        # Ownership: who runs a job, under which claim.
        "ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE jobs ADD COLUMN owner_address TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE jobs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE owners (
            id TEXT PRIMARY KEY,
            address TEXT NOT NULL,
            pid INTEGER NOT NULL,
            start_time REAL NOT NULL,
            lease_expires REAL NOT NULL
        )""",
        # Version 1 deduplicated in one server's memory, so two servers on one file could queue the same root
        # twice; such later twins keep running but lose their key, so the unique index below can be built.
        f"""UPDATE jobs SET dedup_key = '' WHERE state IN ({_PENDING}, {_RUNNING}) AND dedup_key != '' AND ord NOT IN (
            SELECT MIN(ord) FROM jobs WHERE state IN ({_PENDING}, {_RUNNING}) AND dedup_key != ''
            GROUP BY kind, dedup_key)""",
        # Deduplication decided by the database: one active job per (kind, key).
        f"""CREATE UNIQUE INDEX jobs_active_dedup ON jobs (kind, dedup_key)
            WHERE dedup_key != '' AND state IN ({_PENDING}, {_RUNNING})""",
    ],
    3: [
        # Children (the shards of a big scan): their parent, and what each one is to do (plus the parent's plan).
        "ALTER TABLE jobs ADD COLUMN parent_id TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX jobs_by_parent ON jobs (parent_id, ord)",
        """CREATE TABLE job_payloads (
            job_id TEXT PRIMARY KEY,
            payload TEXT NOT NULL  -- JSON (ASCII: file names that are not UTF-8 survive as escapes)
        )""",
    ],
}

_COLUMNS = (
    "id, kind, state, spec, timeout_s, create_time, update_time, start_time, finish_time, seq, fraction, stage, "
    "items_done, items_total, current_item, rate, eta_s, cancel_requested, result, error_code, error_message, "
    "dedup_key, recoveries, owner, owner_address, epoch, parent_id"
)
_NAMED = ", ".join(f":{c.strip()}" for c in _COLUMNS.split(","))
_ALL = [c.strip() for c in _COLUMNS.split(",")]
_ASSIGN = ", ".join(f"{c} = :{c}" for c in _ALL if c != "id")
# What an owner's write sets: everything but the cancel flag (anyone may set it, no owner write clears it) and the
# ownership itself, which only claims and recovery change; a job handed back to PENDING loses its owner.
_OWNERSHIP = ("owner", "owner_address", "epoch")
_OWNER_ASSIGN = ", ".join(f"{c} = :{c}" for c in _ALL if c not in ("id", "cancel_requested", *_OWNERSHIP))
_OWNER_ASSIGN += f", owner = CASE WHEN :state = {_PENDING} THEN '' ELSE owner END"
_OWNER_ASSIGN += f", owner_address = CASE WHEN :state = {_PENDING} THEN '' ELSE owner_address END"
# An owner's write lands only while the job is still its claim (owner + epoch) and its lease has not expired: after
# that, recovery may hand the job to someone else at any moment.
_FENCE = (
    f"id = :id AND owner = :owner AND epoch = :epoch AND state = {_RUNNING} "
    "AND EXISTS (SELECT 1 FROM owners WHERE owners.id = :owner AND owners.lease_expires > :now)"
)
_TERMINAL = ", ".join(str(int(s)) for s in sorted(TERMINAL_STATES))
# The same fence for writes outside the jobs table: run inside another transaction on this database (it holds the
# write lock: BEGIN IMMEDIATE), a row back means the claim still holds until that transaction commits.
FENCE_CHECK = f"SELECT 1 FROM jobs WHERE {_FENCE}"


def _params(job: Job) -> dict[str, Any]:
    return job_params(job, json_column=lambda value: json.dumps(value, sort_keys=True), flag=int)


def _unowned(job: Job) -> Job:
    return dataclasses.replace(job, owner="", owner_address="")


def _fenced(job: Job) -> dict[str, Any]:
    return {**_params(job), "now": time.time()}


_job = job_from_row


def _in(column: str, values: Iterable[int]) -> tuple[str, list[int]]:
    vals = sorted({int(v) for v in values})
    return f"{column} IN ({', '.join('?' * len(vals))})", vals


class SqliteJobStore:
    """JobStore on one aiosqlite connection. Use `await SqliteJobStore.open(path)`."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._changes = ChangeFeed()
        # Multi-statement transactions share the connection with every other call: without this lock another
        # coroutine's statement could run inside them.
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, *, take_over: bool = False) -> SqliteJobStore:
        """Opens (creating or migrating) the jobs tables in `path`. `take_over`: the caller is the one server on
        this file (it holds the server lock), so every owner recorded in it is a dead process: their leases end
        now, and recover_expired() recovers their jobs at once instead of after their TTL."""
        conn = await db.connect(path)
        try:
            await conn.execute("BEGIN IMMEDIATE")
            await _migrate(conn, path)
            if take_over:
                await conn.execute("DELETE FROM owners")
            await conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            await conn.close()
            raise
        return cls(conn)

    @property
    def changes(self) -> ChangeFeed:
        return self._changes

    async def close(self) -> None:
        await self._conn.close()

    async def insert(self, job: Job) -> None:
        async with self._lock:
            await self._conn.execute(f"INSERT INTO jobs ({_COLUMNS}) VALUES ({_NAMED})", _params(job))
        self._changes.emit(ChangeEvent.of(job))

    async def submit(self, job: Job, *, max_pending: int) -> tuple[Job, bool]:
        async with self._lock, self._transaction():
            if job.dedup_key:
                rows = await self._conn.execute_fetchall(
                    f"SELECT {_COLUMNS} FROM jobs WHERE kind = ? AND dedup_key = ? AND state IN ({_PENDING}, "
                    f"{_RUNNING})",
                    (int(job.kind), job.dedup_key),
                )
                if rows:
                    return _job(next(iter(rows))), True
            rows = await self._conn.execute_fetchall(
                f"SELECT COUNT(*) FROM jobs WHERE state = {_PENDING} AND parent_id = ''"
            )
            pending = next(iter(rows))[0]
            if pending >= max_pending:
                raise ResourceExhausted(f"{pending} jobs are already waiting (limit {max_pending}); try again later")
            await self._conn.execute(f"INSERT INTO jobs ({_COLUMNS}) VALUES ({_NAMED})", _params(job))
        self._changes.emit(ChangeEvent.of(job))
        return job, False

    # ---- ownership -------------------------------------------------------------------------------------------

    async def register_owner(self, owner: Owner, ttl_s: float) -> None:
        now = time.time()
        async with self._lock:
            await self._conn.execute(
                "INSERT OR REPLACE INTO owners (id, address, pid, start_time, lease_expires) VALUES (?, ?, ?, ?, ?)",
                (owner.id, owner.address, owner.pid, now, now + ttl_s),
            )

    async def renew_lease(self, owner_id: str, ttl_s: float) -> bool:
        now = time.time()
        async with self._lock:
            cur = await self._conn.execute(
                "UPDATE owners SET lease_expires = ? WHERE id = ? AND lease_expires > ?", (now + ttl_s, owner_id, now)
            )
        return cur.rowcount > 0

    async def release_owner(self, owner_id: str) -> None:
        async with self._lock:
            await self._conn.execute("DELETE FROM owners WHERE id = ?", (owner_id,))

    async def claim(self, owner_id: str, kinds: Collection[JobKind], limit: int) -> list[Job]:
        if limit < 1 or not kinds:
            return []
        kind_in, kind_args = _in("kind", kinds)
        async with self._lock, self._transaction():
            now = time.time()
            owners = await self._conn.execute_fetchall("SELECT address FROM owners WHERE id = ?", (owner_id,))
            address = next(iter(owners))[0] if owners else ""
            claimed: list[Job] = []
            # One at a time: a claimed shard is RUNNING under this owner before the next one is looked for, so its
            # siblings are passed over (JobStore.claim).
            while len(claimed) < limit:
                rows = await self._conn.execute_fetchall(
                    f"SELECT {_COLUMNS} FROM jobs WHERE state = {_PENDING} AND {kind_in} AND (parent_id = '' OR NOT "
                    f"EXISTS (SELECT 1 FROM jobs r WHERE r.parent_id = jobs.parent_id AND r.state = {_RUNNING} "
                    "AND r.owner = ?)) ORDER BY ord LIMIT 1",
                    [*kind_args, owner_id],
                )
                if not rows:
                    break
                job = claim(_job(next(iter(rows))), owner_id, now=now, address=address)
                await self._conn.execute(
                    f"UPDATE jobs SET {_ASSIGN} WHERE id = :id AND state = {_PENDING}", _params(job)
                )
                claimed.append(job)
        for job in claimed:
            self._changes.emit(ChangeEvent.of(job))
        return claimed

    async def save(self, job: Job) -> bool:
        # RETURNING: the event tells the row this statement wrote (with the stored cancel flag), not a later one.
        async with self._lock:
            rows = await self._conn.execute_fetchall(
                f"UPDATE jobs SET {_OWNER_ASSIGN} WHERE {_FENCE} RETURNING {_COLUMNS}", _fenced(job)
            )
        if not rows:
            return False
        self._changes.emit(ChangeEvent.of(_job(next(iter(rows)))))
        return True

    async def checkpoint(self, job: Job) -> bool:
        if job.state is not JobState.RUNNING:
            return False
        async with self._lock:
            rows = await self._conn.execute_fetchall(
                f"UPDATE jobs SET {_OWNER_ASSIGN} WHERE {_FENCE} AND seq <= :seq RETURNING cancel_requested",
                _fenced(job),
            )
        if not rows:
            return False
        # The snapshot's own flag may predate a cancel request; the event tells the stored one.
        self._changes.emit(ChangeEvent(job.id, job.seq, job.state, bool(next(iter(rows))[0])))
        return True

    async def request_cancel(self, job_id: str) -> Job | None:
        async with self._lock, self._transaction():
            job = await self._get(job_id)
            if job is None:
                return None
            changed = [await self._cancel(job)]
            rows = await self._conn.execute_fetchall(
                f"SELECT {_COLUMNS} FROM jobs WHERE parent_id = ? AND state IN ({_PENDING}, {_RUNNING}) ORDER BY ord",
                (job_id,),
            )
            changed += [await self._cancel(_job(row)) for row in rows]
        for event_job in changed:
            if event_job is not None:
                self._changes.emit(ChangeEvent.of(event_job))
        return changed[0] or job

    async def _cancel(self, job: Job) -> Job | None:
        """Inside a transaction: the job with cancel requested as stored, or None if that changed nothing."""
        if job.terminal or job.cancel_requested:
            return None
        job = dataclasses.replace(job, cancel_requested=True)
        if job.state is JobState.PENDING:
            job = transition(job, JobState.CANCELLED, now=time.time())
            await self._conn.execute(f"UPDATE jobs SET {_ASSIGN} WHERE id = :id", _params(job))
        else:
            await self._conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job.id,))
        return job

    # ---- children --------------------------------------------------------------------------------------------

    async def spawn_children(
        self, parent: Job, plan: Mapping[str, Any], children: Sequence[tuple[Job, Mapping[str, Any]]]
    ) -> list[Job] | None:
        async with self._lock, self._transaction():
            fenced = await self._conn.execute_fetchall(f"SELECT 1 FROM jobs WHERE {_FENCE}", _fenced(parent))
            if not fenced:
                return None
            existing = await self._conn.execute_fetchall(
                f"SELECT {_COLUMNS} FROM jobs WHERE parent_id = ? ORDER BY ord", (parent.id,)
            )
            if existing:
                return [_job(row) for row in existing]
            payloads = [(parent.id, payload_to_text(plan))] + [(c.id, payload_to_text(p)) for c, p in children]
            await self._conn.executemany("INSERT INTO job_payloads (job_id, payload) VALUES (?, ?)", payloads)
            await self._conn.executemany(
                f"INSERT INTO jobs ({_COLUMNS}) VALUES ({_NAMED})", [_params(child) for child, _ in children]
            )
        for child, _ in children:
            self._changes.emit(ChangeEvent.of(child))
        return [child for child, _ in children]

    async def list_children(self, parent_id: str) -> list[Job]:
        rows = await self._conn.execute_fetchall(
            f"SELECT {_COLUMNS} FROM jobs WHERE parent_id = ? ORDER BY ord", (parent_id,)
        )
        return [_job(row) for row in rows]

    async def get_payload(self, job_id: str) -> Mapping[str, Any] | None:
        rows = await self._conn.execute_fetchall("SELECT payload FROM job_payloads WHERE job_id = ?", (job_id,))
        return payload_from_text(next(iter(rows))[0]) if rows else None

    async def recover_expired(self) -> list[Job]:
        async with self._lock, self._transaction():
            now = time.time()
            rows = await self._conn.execute_fetchall(
                f"SELECT {_COLUMNS} FROM jobs WHERE state = {_RUNNING} "
                "AND owner NOT IN (SELECT id FROM owners WHERE lease_expires > ?) ORDER BY ord",
                (now,),
            )
            recovered = []
            for row in rows:
                job = recover_crashed(_job(row), now=now)
                recovered.append(_unowned(job) if job.state is JobState.PENDING else job)
            await self._conn.executemany(
                f"UPDATE jobs SET {_ASSIGN} WHERE id = :id AND state = {_RUNNING}", [_params(j) for j in recovered]
            )
            await self._conn.execute("DELETE FROM owners WHERE lease_expires <= ?", (now,))
        for job in recovered:
            self._changes.emit(ChangeEvent.of(job))
        return recovered

    # ---- reading and housekeeping ----------------------------------------------------------------------------

    # Every read is one execute_fetchall: the rows are fetched in the same call on the connection's thread, so the
    # statement never stays open across an await. An open SELECT is a read transaction, and a write queued on this
    # connection meanwhile would run inside it, where SQLite cannot wait for another connection's write lock (the
    # busy timeout does not apply) and fails at once with "database is locked".
    async def get(self, job_id: str) -> Job | None:
        return await self._get(job_id)

    async def _get(self, job_id: str) -> Job | None:
        rows = await self._conn.execute_fetchall(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _job(next(iter(rows))) if rows else None

    async def list_page(
        self,
        *,
        states: Collection[JobState],
        kinds: Collection[JobKind],
        page_size: int,
        page_token: str,
        parent_id: str = "",
    ) -> tuple[list[Job], str]:
        if page_size < 1:
            raise InvalidArgument(f"page_size must be positive, got {page_size}", field="page_size")
        filters_fp = tokens.job_filters_fingerprint(states, kinds, parent_id)
        clauses: list[str] = ["parent_id = ?"]
        args: list[int | str] = [parent_id]
        for column, values in (("state", states), ("kind", kinds)):
            if values:
                clause, vals = _in(column, values)
                clauses.append(clause)
                args += vals
        if page_token:
            position = tokens.decode_int64_position(page_token, filters_fp)
            clauses.append("ord < ?")
            args.append(position)
        sql = f"SELECT ord, {_COLUMNS} FROM jobs WHERE {' AND '.join(clauses)} ORDER BY ord DESC LIMIT ?"
        rows = list(await self._conn.execute_fetchall(sql, [*args, page_size + 1]))
        next_token = ""
        if len(rows) > page_size:
            rows = rows[:page_size]
            next_token = tokens.encode([rows[-1]["ord"]], filters_fp)
        return [_job(row) for row in rows], next_token

    async def list_finished_before(self, cutoff: float, limit: int) -> list[Job]:
        sql = (
            f"SELECT {_COLUMNS} FROM jobs WHERE finish_time IS NOT NULL AND finish_time < ? "
            f"AND state IN ({_TERMINAL}) AND parent_id = '' ORDER BY finish_time LIMIT ?"
        )
        return [_job(row) for row in await self._conn.execute_fetchall(sql, (cutoff, limit))]

    async def count_by_state(self) -> JobCounts:
        sql = "SELECT state, parent_id <> '' AS shard, COUNT(*) FROM jobs GROUP BY state, shard"
        return JobCounts.of((state, shard, n) for state, shard, n in await self._conn.execute_fetchall(sql))

    async def delete(self, job_id: str) -> bool:
        async with self._lock, self._transaction():
            rows = await self._conn.execute_fetchall(
                f"DELETE FROM jobs WHERE id = ? AND state IN ({_TERMINAL}) RETURNING id, seq, state, cancel_requested",
                (job_id,),
            )
            if rows:
                rows = list(rows) + list(
                    await self._conn.execute_fetchall(
                        "DELETE FROM jobs WHERE parent_id = ? RETURNING id, seq, state, cancel_requested", (job_id,)
                    )
                )
                await self._conn.executemany("DELETE FROM job_payloads WHERE job_id = ?", [(r[0],) for r in rows])
        for row_id, seq, state, cancel_requested in rows:
            self._changes.emit(ChangeEvent(row_id, seq, JobState(state), bool(cancel_requested), deleted=True))
        return bool(rows)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """BEGIN IMMEDIATE (take the write lock first, so the reads inside see what the writes will change) ...
        COMMIT, or ROLLBACK on any error. Hold self._lock around it."""
        await self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            await self._conn.execute("ROLLBACK")
            raise
        await self._conn.execute("COMMIT")


async def _migrate(conn: aiosqlite.Connection, path: Path) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            await conn.execute(statement)
    rows = await conn.execute_fetchall("SELECT version FROM schema_versions WHERE component = ?", (SCHEMA_COMPONENT,))
    if not rows:  # a new database: the tables above are version 1
        await conn.execute("INSERT INTO schema_versions (component, version) VALUES (?, 1)", (SCHEMA_COMPONENT,))
        version = 1
    else:
        version = next(iter(rows))[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"{path}: jobs schema version {version} is newer than this server understands "
            f"({SCHEMA_VERSION}); upgrade reelscan"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        for statement in _MIGRATIONS[target]:
            await conn.execute(statement)
    if version < SCHEMA_VERSION:
        await conn.execute(
            "UPDATE schema_versions SET version = ? WHERE component = ?", (SCHEMA_VERSION, SCHEMA_COMPONENT)
        )
