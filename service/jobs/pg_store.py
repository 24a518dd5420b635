"""JobStore on PostgreSQL, for several replicas on one database (psycopg 3, async, pooled).

The same protocol and contract suite as the SQLite store, with what several processes need:
- claims take the oldest pending rows with `FOR UPDATE SKIP LOCKED` inside a MATERIALIZED CTE (the CTE fences the
  planner, so the LIMIT cannot be re-evaluated per row and claim more than asked), so concurrent claimers never wait
  for each other and never get the same job;
- leases use the database's clock (`clock_timestamp()`), the one clock every replica shares; an owner's write lands
  only while its claim (owner + epoch) holds and its lease has not expired;
- submits serialise on a transaction-level advisory lock, so dedup and the queue bound are exact across replicas
  (the partial unique index is the backstop);
- every committed change sends a NOTIFY on `reelscan_jobs` in the same statement or transaction, with a small
  payload (sender|id|seq|state|cancel|deleted, far below the 8,000-byte limit); the listener (pg/listener.py) turns
  other replicas' notifications into ChangeEvents, and this store emits its own changes locally at once;
- the lease heartbeat runs on a dedicated connection, so a pool saturated by scans cannot make a live replica look
  dead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

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
    Stage,
    recover_crashed,
    transition,
)
from reelscan.service.jobs.store import Owner, payload_from_text, payload_to_text
from reelscan.service.pg.database import PgDatabase
from reelscan.service.pg.listener import PgListener
from reelscan.service.pg.migrate import migrate

CHANNEL = "reelscan_jobs"
SUBMIT_LOCK = 0x7265656D  # advisory lock key serialising submits (dedup check + queue bound + insert)
_PENDING, _RUNNING = int(JobState.PENDING), int(JobState.RUNNING)
_TERMINAL = ", ".join(str(int(s)) for s in sorted(TERMINAL_STATES))

SCHEMA: dict[int, list[str]] = {
    1: [
        """CREATE TABLE jobs (
            ord bigserial PRIMARY KEY,  -- insertion order: page tokens and oldest-first claims (never reused)
            id text NOT NULL UNIQUE,
            kind smallint NOT NULL,
            state smallint NOT NULL,
            spec jsonb NOT NULL,
            timeout_s double precision NOT NULL,
            create_time double precision NOT NULL,
            update_time double precision NOT NULL,
            start_time double precision,
            finish_time double precision,
            seq bigint NOT NULL,
            fraction double precision NOT NULL,
            stage smallint NOT NULL,
            items_done bigint NOT NULL,
            items_total bigint NOT NULL,
            current_item text NOT NULL,
            rate double precision NOT NULL,
            eta_s double precision,
            cancel_requested boolean NOT NULL,
            result jsonb NOT NULL,
            error_code integer,
            error_message text,
            dedup_key text NOT NULL,
            recoveries integer NOT NULL,
            owner text NOT NULL DEFAULT '',
            owner_address text NOT NULL DEFAULT '',
            epoch bigint NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX jobs_by_state ON jobs (state, ord)",
        "CREATE INDEX jobs_pending ON jobs (ord) WHERE state = 1",
        "CREATE INDEX jobs_running_owner ON jobs (owner) WHERE state = 2",
        "CREATE INDEX jobs_by_finish ON jobs (finish_time) WHERE finish_time IS NOT NULL",
        "CREATE UNIQUE INDEX jobs_active_dedup ON jobs (kind, dedup_key) WHERE dedup_key <> '' AND state IN (1, 2)",
        """CREATE TABLE owners (
            id text PRIMARY KEY,
            address text NOT NULL,
            pid integer NOT NULL,
            start_time double precision NOT NULL,
            lease_expires double precision NOT NULL  -- database clock, Unix seconds
        )""",
    ],
    2: [
        # Children (the shards of a big scan): their parent, and what each one is to do (plus the parent's plan).
        "ALTER TABLE jobs ADD COLUMN parent_id text NOT NULL DEFAULT ''",
        "CREATE INDEX jobs_by_parent ON jobs (parent_id, ord)",
        # text, not jsonb: the JSON is ASCII with escapes (file names that are not UTF-8), which jsonb would refuse
        "CREATE TABLE job_payloads (job_id text PRIMARY KEY, payload text NOT NULL)",
    ],
}

_ALL = [
    "id", "kind", "state", "spec", "timeout_s", "create_time", "update_time", "start_time", "finish_time", "seq",
    "fraction", "stage", "items_done", "items_total", "current_item", "rate", "eta_s", "cancel_requested", "result",
    "error_code", "error_message", "dedup_key", "recoveries", "owner", "owner_address", "epoch", "parent_id",
]  # fmt: skip
_COLUMNS = ", ".join(_ALL)
_NAMED = ", ".join(f"%({c})s" for c in _ALL)
_ASSIGN = ", ".join(f"{c} = %({c})s" for c in _ALL if c != "id")
# An owner's write sets everything but the cancel flag (anyone may set it; no owner write clears it) and the
# ownership itself (claims and recovery change it); a job handed back to PENDING loses its owner.
_OWNERSHIP = ("owner", "owner_address", "epoch")
_OWNER_ASSIGN = ", ".join(f"{c} = %({c})s" for c in _ALL if c not in ("id", "cancel_requested", *_OWNERSHIP))
_OWNER_ASSIGN += f", owner = CASE WHEN %(state)s = {_PENDING} THEN '' ELSE jobs.owner END"
_OWNER_ASSIGN += f", owner_address = CASE WHEN %(state)s = {_PENDING} THEN '' ELSE jobs.owner_address END"
_NOW = "extract(epoch from clock_timestamp())"
_FENCE = (
    f"id = %(id)s AND owner = %(owner)s AND epoch = %(epoch)s AND state = {_RUNNING} "
    f"AND EXISTS (SELECT 1 FROM owners o WHERE o.id = %(owner)s AND o.lease_expires > {_NOW})"
)
# The same fence for writes outside the jobs table, run first in their transaction: FOR SHARE holds the job row,
# so recovery (an UPDATE of it) cannot hand the job to another replica until that transaction has committed.
FENCE_CHECK = f"SELECT 1 FROM jobs WHERE {_FENCE} FOR SHARE"
# The notification of a written row, sent by the statement that wrote it (so it is committed with it).
_NOTIFY = f"pg_notify('{CHANNEL}', concat_ws('|', %(sender)s::text, u.id, u.seq, u.state, u.cancel_requested::int, 0))"


def _params(job: Job) -> dict[str, Any]:
    return job_params(job, json_column=Jsonb, text=_text)


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL; a NUL can only come from a foreign error message, never from a path.
    return value.replace("\x00", "\ufffd")


_job = job_from_row


def parse_notification(payload: str, own_sender: str) -> ChangeEvent | None:
    """A `reelscan_jobs` payload as an event; None for our own (already emitted locally) or a malformed one."""
    parts = payload.split("|")
    if len(parts) != 6 or parts[0] == own_sender:
        return None
    try:
        return ChangeEvent(parts[1], int(parts[2]), JobState(int(parts[3])), parts[4] == "1", parts[5] == "1")
    except ValueError:
        return None


class PgJobStore:
    """JobStore on a PgDatabase. Use `await PgJobStore.open(db)`; close() stops its listener and heartbeat
    connection but leaves the database (shared with the library store) to its owner."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        self._changes = ChangeFeed()
        self._sender = uuid.uuid4().hex[:12]  # tells our own notifications from other replicas'
        self._listener = PgListener(db, CHANNEL, self._notified, self._changes.emit_resync)
        self._heartbeat_conn: psycopg.AsyncConnection[Any] | None = None
        self._heartbeat_lock = asyncio.Lock()

    @classmethod
    async def open(cls, db: PgDatabase) -> PgJobStore:
        async with db.pool.connection() as conn:
            await migrate(conn, "jobs", SCHEMA, db.where)
        store = cls(db)
        await store._listener.start()
        return store

    @property
    def changes(self) -> ChangeFeed:
        return self._changes

    @property
    def listening(self) -> bool:
        """Whether the change listener is connected (health: a replica without it is cut off)."""
        return self._listener.connected

    async def close(self) -> None:
        await self._listener.close()
        if self._heartbeat_conn is not None:
            await self._heartbeat_conn.close()

    def _notified(self, payload: str) -> None:
        event = parse_notification(payload, self._sender)
        if event is not None:
            self._changes.emit(event)

    def _emit(self, rows: Iterable[dict[str, Any]], *, deleted: bool = False) -> None:
        for row in rows:
            self._changes.emit(
                ChangeEvent(row["id"], row["seq"], JobState(row["state"]), bool(row["cancel_requested"]), deleted)
            )

    async def _fetch(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        async with self._db.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(sql, params)
            return await cur.fetchall() if cur.description else []

    # ---- writes ----------------------------------------------------------------------------------------------

    async def insert(self, job: Job) -> None:
        rows = await self._fetch(
            f"WITH u AS (INSERT INTO jobs ({_COLUMNS}) VALUES ({_NAMED}) RETURNING id, seq, state, cancel_requested) "
            f"SELECT u.*, {_NOTIFY} FROM u",
            {**_params(job), "sender": self._sender},
        )
        self._emit(rows)

    async def submit(self, job: Job, *, max_pending: int) -> tuple[Job, bool]:
        async with self._db.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT pg_advisory_xact_lock(%s)", (SUBMIT_LOCK,))
            if job.dedup_key:
                await cur.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE kind = %s AND dedup_key = %s AND state IN ({_PENDING}, "
                    f"{_RUNNING})",
                    (int(job.kind), job.dedup_key),
                )
                existing = await cur.fetchone()
                if existing is not None:
                    return _job(existing), True
            await cur.execute(f"SELECT count(*) AS n FROM jobs WHERE state = {_PENDING} AND parent_id = ''")
            counted = await cur.fetchone()
            pending = int(counted["n"]) if counted else 0
            if pending >= max_pending:
                raise ResourceExhausted(f"{pending} jobs are already waiting (limit {max_pending}); try again later")
            await cur.execute(
                f"WITH u AS (INSERT INTO jobs ({_COLUMNS}) VALUES ({_NAMED}) "
                "RETURNING id, seq, state, cancel_requested) "
                f"SELECT u.*, {_NOTIFY} FROM u",
                {**_params(job), "sender": self._sender},
            )
            rows = await cur.fetchall()
        self._emit(rows)
        return job, False

    # ---- ownership -------------------------------------------------------------------------------------------

    async def register_owner(self, owner: Owner, ttl_s: float) -> None:
        await self._fetch(
            "INSERT INTO owners (id, address, pid, start_time, lease_expires) "
            f"VALUES (%s, %s, %s, {_NOW}, {_NOW} + %s) "
            "ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address, lease_expires = EXCLUDED.lease_expires",
            (owner.id, owner.address, owner.pid, ttl_s),
        )

    async def renew_lease(self, owner_id: str, ttl_s: float) -> bool:
        # A connection of its own: heartbeats must not queue behind a pool that scans keep busy.
        async with self._heartbeat_lock:
            try:
                if self._heartbeat_conn is None or self._heartbeat_conn.closed:
                    self._heartbeat_conn = await self._db.connect()
                cur = await self._heartbeat_conn.execute(
                    f"UPDATE owners SET lease_expires = {_NOW} + %s WHERE id = %s AND lease_expires > {_NOW}",
                    (ttl_s, owner_id),
                )
            except psycopg.Error:
                if self._heartbeat_conn is not None:
                    await self._heartbeat_conn.close()
                    self._heartbeat_conn = None
                raise
            return cur.rowcount > 0

    async def release_owner(self, owner_id: str) -> None:
        await self._fetch("DELETE FROM owners WHERE id = %s", (owner_id,))

    async def claim(self, owner_id: str, kinds: Collection[JobKind], limit: int) -> list[Job]:
        # One job a statement: each claimed shard is RUNNING under this owner before the next statement looks, so
        # its siblings are passed over (JobStore.claim).
        claimed: list[Job] = []
        while len(claimed) < limit and kinds:
            rows = await self._claim_one(owner_id, kinds)
            if not rows:
                break
            self._emit(rows)
            claimed += [_job(row) for row in rows]
        return claimed

    async def _claim_one(self, owner_id: str, kinds: Collection[JobKind]) -> list[dict[str, Any]]:
        now = time.time()
        return await self._fetch(
            # An owner whose lease has expired claims nothing: a claim sent before its lease ran out can reach the
            # database long after (it waited for a connection through an outage), and what it took would sit
            # RUNNING under a dead owner until recovered again, as a crash that never happened.
            f"""WITH c AS MATERIALIZED (
                    SELECT ord FROM jobs WHERE state = {_PENDING} AND kind = ANY(%(kinds)s)
                    AND NOT EXISTS (SELECT 1 FROM owners o WHERE o.id = %(owner)s AND o.lease_expires <= {_NOW})
                    AND (jobs.parent_id = '' OR NOT EXISTS (SELECT 1 FROM jobs r WHERE r.parent_id = jobs.parent_id
                        AND r.state = {_RUNNING} AND r.owner = %(owner)s))
                    ORDER BY ord LIMIT 1 FOR UPDATE SKIP LOCKED),
                u AS (
                    UPDATE jobs SET state = {_RUNNING}, owner = %(owner)s, epoch = jobs.epoch + 1, seq = jobs.seq + 1,
                        owner_address = COALESCE((SELECT address FROM owners WHERE id = %(owner)s), ''),
                        start_time = %(now)s, update_time = %(now)s,
                        stage = CASE WHEN jobs.stage = {int(Stage.QUEUED)} THEN {int(Stage.DISCOVERING)}
                                ELSE jobs.stage END
                    FROM c WHERE jobs.ord = c.ord RETURNING jobs.ord, {", ".join(f"jobs.{c}" for c in _ALL)})
                SELECT u.*, {_NOTIFY} FROM u ORDER BY u.ord""",
            {
                "kinds": sorted(int(k) for k in kinds),
                "owner": owner_id,
                "now": now,
                "sender": self._sender,
            },
        )

    async def save(self, job: Job) -> bool:
        rows = await self._fetch(
            f"WITH u AS (UPDATE jobs SET {_OWNER_ASSIGN} WHERE {_FENCE} RETURNING id, seq, state, cancel_requested) "
            f"SELECT u.*, {_NOTIFY} FROM u",
            {**_params(job), "sender": self._sender},
        )
        self._emit(rows)
        return bool(rows)

    async def checkpoint(self, job: Job) -> bool:
        if job.state is not JobState.RUNNING:
            return False
        rows = await self._fetch(
            f"WITH u AS (UPDATE jobs SET {_OWNER_ASSIGN} WHERE {_FENCE} AND seq <= %(seq)s "
            "RETURNING id, seq, state, cancel_requested) "
            f"SELECT u.*, {_NOTIFY} FROM u",
            {**_params(job), "sender": self._sender},
        )
        self._emit(rows)
        return bool(rows)

    async def request_cancel(self, job_id: str) -> Job | None:
        async with self._db.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
            row = await cur.fetchone()
            if row is None:
                return None
            job = _job(row)
            notified: list[dict[str, Any]] = []
            cancelled = await self._cancel(cur, job, notified)
            await cur.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE parent_id = %s AND state IN ({_PENDING}, {_RUNNING}) "
                "ORDER BY ord FOR UPDATE",
                (job_id,),
            )
            for child in [_job(r) for r in await cur.fetchall()]:
                await self._cancel(cur, child, notified)
        self._emit(notified)
        return cancelled or job

    async def _cancel(
        self, cur: psycopg.AsyncCursor[dict[str, Any]], job: Job, notified: list[dict[str, Any]]
    ) -> Job | None:
        """Inside a transaction, the row locked: the job with cancel requested as stored, or None if unchanged."""
        if job.terminal or job.cancel_requested:
            return None
        job = dataclasses.replace(job, cancel_requested=True)
        if job.state is JobState.PENDING:
            job = transition(job, JobState.CANCELLED, now=time.time())
            sql = f"UPDATE jobs SET {_ASSIGN} WHERE id = %(id)s"
        else:
            sql = "UPDATE jobs SET cancel_requested = true WHERE id = %(id)s"
        await cur.execute(
            f"WITH u AS ({sql} RETURNING id, seq, state, cancel_requested) SELECT u.*, {_NOTIFY} FROM u",
            {**_params(job), "sender": self._sender},
        )
        notified += await cur.fetchall()
        return job

    # ---- children --------------------------------------------------------------------------------------------

    async def spawn_children(
        self, parent: Job, plan: Mapping[str, Any], children: Sequence[tuple[Job, Mapping[str, Any]]]
    ) -> list[Job] | None:
        async with self._db.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            # FOR UPDATE on the parent: two coordinators of one parent (a lost one and its successor) serialise
            # here, and only the one whose claim still holds passes the fence.
            await cur.execute(f"SELECT 1 FROM jobs WHERE {_FENCE} FOR UPDATE", _params(parent))
            if await cur.fetchone() is None:
                return None
            await cur.execute(f"SELECT {_COLUMNS} FROM jobs WHERE parent_id = %s ORDER BY ord", (parent.id,))
            existing = await cur.fetchall()
            if existing:
                return [_job(row) for row in existing]
            await cur.executemany(
                "INSERT INTO job_payloads (job_id, payload) VALUES (%s, %s)",
                [(parent.id, payload_to_text(plan))] + [(c.id, payload_to_text(p)) for c, p in children],
            )
            notified: list[dict[str, Any]] = []
            for child, _ in children:
                await cur.execute(
                    f"WITH u AS (INSERT INTO jobs ({_COLUMNS}) VALUES ({_NAMED}) "
                    "RETURNING id, seq, state, cancel_requested) "
                    f"SELECT u.*, {_NOTIFY} FROM u",
                    {**_params(child), "sender": self._sender},
                )
                notified += await cur.fetchall()
        self._emit(notified)
        return [child for child, _ in children]

    async def list_children(self, parent_id: str) -> list[Job]:
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM jobs WHERE parent_id = %s ORDER BY ord", (parent_id,))
        return [_job(row) for row in rows]

    async def get_payload(self, job_id: str) -> Mapping[str, Any] | None:
        rows = await self._fetch("SELECT payload FROM job_payloads WHERE job_id = %s", (job_id,))
        return payload_from_text(rows[0]["payload"]) if rows else None

    async def recover_expired(self) -> list[Job]:
        async with self._db.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            # SKIP LOCKED: replicas recovering at once split the work; a row being written by its owner right now
            # is left for the next round.
            await cur.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state = {_RUNNING} AND NOT EXISTS ("
                f"SELECT 1 FROM owners o WHERE o.id = jobs.owner AND o.lease_expires > {_NOW}) "
                "ORDER BY ord FOR UPDATE SKIP LOCKED"
            )
            stale = [_job(row) for row in await cur.fetchall()]
            if not stale:
                await cur.execute(f"DELETE FROM owners WHERE lease_expires <= {_NOW} - 60")
                return []
            now = time.time()
            recovered = []
            for job in stale:
                new = recover_crashed(job, now=now)
                recovered.append(
                    dataclasses.replace(new, owner="", owner_address="") if new.state is JobState.PENDING else new
                )
            notified: list[dict[str, Any]] = []
            for job in recovered:
                await cur.execute(
                    f"WITH u AS (UPDATE jobs SET {_ASSIGN} WHERE id = %(id)s AND state = {_RUNNING} "
                    f"RETURNING id, seq, state, cancel_requested) SELECT u.*, {_NOTIFY} FROM u",
                    {**_params(job), "sender": self._sender},
                )
                notified += await cur.fetchall()
            # Expired owners are kept a minute, so a replica that froze finds its lease gone (not re-creatable).
            await cur.execute(f"DELETE FROM owners WHERE lease_expires <= {_NOW} - 60")
        self._emit(notified)
        return recovered

    # ---- reading and housekeeping ----------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM jobs WHERE id = %s", (job_id,))
        return _job(rows[0]) if rows else None

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
        clauses: list[str] = ["parent_id = %s"]
        args: list[Any] = [_text(parent_id)]
        for column, values in (("state", states), ("kind", kinds)):
            if values:
                clauses.append(f"{column} = ANY(%s)")
                args.append(sorted({int(v) for v in values}))
        if page_token:
            clauses.append("ord < %s")
            args.append(tokens.decode_int64_position(page_token, filters_fp))
        rows = await self._fetch(
            f"SELECT ord, {_COLUMNS} FROM jobs WHERE {' AND '.join(clauses)} ORDER BY ord DESC LIMIT %s",
            [*args, page_size + 1],
        )
        next_token = ""
        if len(rows) > page_size:
            rows = rows[:page_size]
            next_token = tokens.encode([rows[-1]["ord"]], filters_fp)
        return [_job(row) for row in rows], next_token

    async def list_finished_before(self, cutoff: float, limit: int) -> list[Job]:
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM jobs WHERE finish_time IS NOT NULL AND finish_time < %s "
            f"AND state IN ({_TERMINAL}) AND parent_id = '' ORDER BY finish_time LIMIT %s",
            (cutoff, limit),
        )
        return [_job(row) for row in rows]

    async def count_by_state(self) -> JobCounts:
        sql = "SELECT state, parent_id <> '' AS shard, COUNT(*) AS n FROM jobs GROUP BY state, shard"
        return JobCounts.of((row["state"], row["shard"], row["n"]) for row in await self._fetch(sql))

    async def delete(self, job_id: str) -> bool:
        notify = (
            f"SELECT u.*, pg_notify('{CHANNEL}', concat_ws('|', %(sender)s::text, u.id, u.seq, u.state, "
            "u.cancel_requested::int, 1)) FROM u"
        )
        params = {"id": job_id, "sender": self._sender}
        async with self._db.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"WITH u AS (DELETE FROM jobs WHERE id = %(id)s AND state IN ({_TERMINAL}) "
                f"RETURNING id, seq, state, cancel_requested) {notify}",
                params,
            )
            rows = await cur.fetchall()
            if rows:
                await cur.execute(
                    f"WITH u AS (DELETE FROM jobs WHERE parent_id = %(id)s RETURNING id, seq, state, cancel_requested) "
                    f"{notify}",
                    params,
                )
                rows += await cur.fetchall()
                await cur.execute("DELETE FROM job_payloads WHERE job_id = ANY(%s)", ([row["id"] for row in rows],))
        self._emit(rows, deleted=True)
        return bool(rows)
