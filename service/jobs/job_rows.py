"""A Job as a row of the `jobs` table and back: one column mapping for both stores (sqlite_store, pg_store).

The stores differ only in how a JSON column travels (SQLite: text; PostgreSQL: jsonb, which psycopg decodes) and
in what text PostgreSQL cannot hold (NUL), so those are the parameters here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from reelscan.service.jobs.model import Job, JobError, JobKind, JobState, Progress, Stage


def _same(value: str) -> str:
    return value


def job_params(
    job: Job,
    *,
    json_column: Callable[[Mapping[str, Any]], Any],
    text: Callable[[str], str] = _same,
    flag: Callable[[bool], Any] = bool,
) -> dict[str, Any]:
    """The named parameters of a row holding `job`: `json_column` encodes spec and result, `text` cleans strings
    that may come from outside (paths, foreign error messages), `flag` stores a boolean."""
    p = job.progress
    return {
        "id": job.id,
        "kind": int(job.kind),
        "state": int(job.state),
        "spec": json_column(dict(job.spec)),
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
        "current_item": text(p.current_item),
        "rate": p.rate,
        "eta_s": p.eta_s,
        "cancel_requested": flag(job.cancel_requested),
        "result": json_column(dict(job.result)),
        "error_code": job.error.code if job.error else None,
        "error_message": text(job.error.message) if job.error else None,
        "dedup_key": text(job.dedup_key),
        "recoveries": job.recoveries,
        "owner": job.owner,
        "owner_address": job.owner_address,
        "epoch": job.epoch,
        "parent_id": job.parent_id,
    }


def _decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def job_from_row(row: Any) -> Job:
    """The Job of a row (anything indexed by column name: sqlite3.Row, a psycopg dict row); JSON columns may
    arrive as text or already decoded."""
    error = JobError(row["error_code"], row["error_message"] or "") if row["error_code"] is not None else None
    return Job(
        id=row["id"],
        kind=JobKind(row["kind"]),
        state=JobState(row["state"]),
        spec=_decoded(row["spec"]),
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
        result={k: int(v) for k, v in _decoded(row["result"]).items()},
        error=error,
        dedup_key=row["dedup_key"],
        recoveries=row["recoveries"],
        owner=row["owner"],
        owner_address=row["owner_address"],
        epoch=row["epoch"],
        parent_id=row["parent_id"],
    )
