"""JobStore on SQLite through aiosqlite (WAL), on its own connection so job writes never interleave with the
library store's batched transactions.

Rows carry an INTEGER PRIMARY KEY `ord` (insertion order) besides the opaque job id: it gives newest-first keyset
pagination a stable, unique key that page tokens can name.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from reelscan.service import db
from reelscan.service.errors import InvalidArgument
from reelscan.service.jobs import page_token as tokens
from reelscan.service.jobs.model import TERMINAL_STATES, Job, JobError, JobKind, JobState, Progress, Stage

SCHEMA_COMPONENT = "jobs"
SCHEMA_VERSION = 1

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

_COLUMNS = (
    "id, kind, state, spec, timeout_s, create_time, update_time, start_time, finish_time, seq, fraction, stage, "
    "items_done, items_total, current_item, rate, eta_s, cancel_requested, result, error_code, error_message, "
    "dedup_key, recoveries"
)
_NAMED = ", ".join(f":{c.strip()}" for c in _COLUMNS.split(","))
_ASSIGN = ", ".join(f"{c.strip()} = :{c.strip()}" for c in _COLUMNS.split(",") if c.strip() != "id")
_TERMINAL = ", ".join(str(int(s)) for s in sorted(TERMINAL_STATES))


def _params(job: Job) -> dict[str, Any]:
    p = job.progress
    return {
        "id": job.id,
        "kind": int(job.kind),
        "state": int(job.state),
        "spec": json.dumps(dict(job.spec), sort_keys=True),
        "timeout_s": job.timeout_s,
        "create_time": job.create_time,
        "update_time": job.update_time,
        "start_time": job.start_time,
        "finish_time": job.finish_time,
        "seq": job.seq,
        "fraction": p.fraction,
        "stage": int(p.stage),
        "items_done": p.done,
        "items_total": p.total,
        "current_item": p.current_item,
        "rate": p.rate,
        "eta_s": p.eta_s,
        "cancel_requested": int(job.cancel_requested),
        "result": json.dumps(dict(job.result), sort_keys=True),
        "error_code": job.error.code if job.error else None,
        "error_message": job.error.message if job.error else None,
        "dedup_key": job.dedup_key,
        "recoveries": job.recoveries,
    }


def _job(row: sqlite3.Row) -> Job:
    error = JobError(row["error_code"], row["error_message"] or "") if row["error_code"] is not None else None
    return Job(
        id=row["id"],
        kind=JobKind(row["kind"]),
        state=JobState(row["state"]),
        spec=json.loads(row["spec"]),
        timeout_s=row["timeout_s"],
        create_time=row["create_time"],
        update_time=row["update_time"],
        start_time=row["start_time"],
        finish_time=row["finish_time"],
        seq=row["seq"],
        progress=Progress(
            fraction=row["fraction"],
            stage=Stage(row["stage"]),
            done=row["items_done"],
            total=row["items_total"],
            current_item=row["current_item"],
            rate=row["rate"],
            eta_s=row["eta_s"],
        ),
        cancel_requested=bool(row["cancel_requested"]),
        result={k: int(v) for k, v in json.loads(row["result"]).items()},
        error=error,
        dedup_key=row["dedup_key"],
        recoveries=row["recoveries"],
    )


def _in(column: str, values: Iterable[int]) -> tuple[str, list[int]]:
    vals = sorted({int(v) for v in values})
    return f"{column} IN ({', '.join('?' * len(vals))})", vals


SQLITE_INT_MIN, SQLITE_INT_MAX = -(2**63), 2**63 - 1


class SqliteJobStore:
    """JobStore on one aiosqlite connection. Use `await SqliteJobStore.open(path)`."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, path: Path) -> SqliteJobStore:
        conn = await db.connect(path)
        try:
            await conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    await conn.execute(statement)
            async with conn.execute(
                "SELECT version FROM schema_versions WHERE component = ?", (SCHEMA_COMPONENT,)
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                await conn.execute(
                    "INSERT INTO schema_versions (component, version) VALUES (?, ?)", (SCHEMA_COMPONENT, SCHEMA_VERSION)
                )
            elif row["version"] > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{path}: jobs schema version {row['version']} is newer than this server understands "
                    f"({SCHEMA_VERSION}); upgrade reelscan"
                )
            await conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            await conn.close()
            raise
        return cls(conn)

    async def close(self) -> None:
        await self._conn.close()

    async def insert(self, job: Job) -> None:
        await self._conn.execute(f"INSERT INTO jobs ({_COLUMNS}) VALUES ({_NAMED})", _params(job))

    async def save(self, job: Job) -> bool:
        cur = await self._conn.execute(
            f"UPDATE jobs SET {_ASSIGN} WHERE id = :id AND state NOT IN ({_TERMINAL})", _params(job)
        )
        return cur.rowcount > 0

    async def checkpoint(self, job: Job) -> None:
        await self._conn.execute(
            f"UPDATE jobs SET {_ASSIGN} WHERE id = :id AND state = {int(JobState.RUNNING)} AND seq < :seq",
            _params(job),
        )

    # Every read is one execute_fetchall: the rows are fetched in the same call on the connection's thread, so the
    # statement never stays open across an await. An open SELECT is a read transaction, and a write queued on this
    # connection meanwhile would run inside it, where SQLite cannot wait for another connection's write lock (the
    # busy timeout does not apply) and fails at once with "database is locked".
    async def get(self, job_id: str) -> Job | None:
        rows = await self._conn.execute_fetchall(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _job(next(iter(rows))) if rows else None

    async def list_active(self) -> list[Job]:
        where, args = _in("state", (JobState.PENDING, JobState.RUNNING))
        rows = await self._conn.execute_fetchall(f"SELECT {_COLUMNS} FROM jobs WHERE {where} ORDER BY ord", args)
        return [_job(row) for row in rows]

    async def list_page(
        self, *, states: Collection[JobState], kinds: Collection[JobKind], page_size: int, page_token: str
    ) -> tuple[list[Job], str]:
        if page_size < 1:
            raise InvalidArgument(f"page_size must be positive, got {page_size}", field="page_size")
        filters_fp = _filters_fingerprint(states, kinds)
        clauses: list[str] = []
        args: list[int] = []
        for column, values in (("state", states), ("kind", kinds)):
            if values:
                clause, vals = _in(column, values)
                clauses.append(clause)
                args += vals
        if page_token:
            position = _decode_position(page_token, filters_fp)
            clauses.append("ord < ?")
            args.append(position)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT ord, {_COLUMNS} FROM jobs {where} ORDER BY ord DESC LIMIT ?"
        rows = list(await self._conn.execute_fetchall(sql, [*args, page_size + 1]))
        next_token = ""
        if len(rows) > page_size:
            rows = rows[:page_size]
            next_token = tokens.encode([rows[-1]["ord"]], filters_fp)
        return [_job(row) for row in rows], next_token

    async def list_finished_before(self, cutoff: float, limit: int) -> list[Job]:
        sql = (
            f"SELECT {_COLUMNS} FROM jobs WHERE finish_time IS NOT NULL AND finish_time < ? "
            f"AND state IN ({_TERMINAL}) ORDER BY finish_time LIMIT ?"
        )
        return [_job(row) for row in await self._conn.execute_fetchall(sql, (cutoff, limit))]

    async def delete(self, job_id: str) -> bool:
        cur = await self._conn.execute(f"DELETE FROM jobs WHERE id = ? AND state IN ({_TERMINAL})", (job_id,))
        return cur.rowcount > 0


def _filters_fingerprint(states: Collection[JobState], kinds: Collection[JobKind]) -> str:
    return tokens.fingerprint({"states": sorted(int(s) for s in states), "kinds": sorted(int(k) for k in kinds)})


def _decode_position(token: str, filters_fp: str) -> int:
    position = tokens.decode(token, filters_fp)
    if (
        len(position) != 1
        or not isinstance(position[0], int)
        or isinstance(position[0], bool)
        or not SQLITE_INT_MIN <= position[0] <= SQLITE_INT_MAX
    ):
        raise InvalidArgument("page_token is malformed", field="page_token")
    return position[0]
