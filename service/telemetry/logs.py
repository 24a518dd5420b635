"""Logging: the `--log-level` syntax, text and JSON formats, and the job events as one line each.

`--log-level` is `LEVEL[,LOGGER=LEVEL...]`: the first part sets reelscan's own level (and the default for
everything else), each `LOGGER=LEVEL` one logger and its children (`DEBUG,aiosqlite=DEBUG`, `INFO,
reelscan.service.scan=DEBUG`, `aiosqlite=DEBUG` alone keeps INFO elsewhere). Loggers outside reelscan (aiosqlite's
SQL, psycopg and its pool, grpc, asyncio) stay at WARNING or above unless they are named: `--log-level DEBUG` means
reelscan's debug lines, not hundreds of SQL statements per scan, and INFO is not a line per pooled connection.

`--log-format json` writes one JSON object per line: time (UTC, ISO 8601), level, logger, message, and the event's
fields (passed as `extra=`; `event` names the kind of line), plus `exception` with the traceback when there is one.
Text lines escape control characters of the message, so a file name cannot forge a log line.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from reelscan.service.jobs.model import Job, JobState
from reelscan.service.telemetry.events import Telemetry

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
OWN_LOGGER = "reelscan"
# Loggers outside reelscan known to be chatty (psycopg.pool logs every connection it lends at INFO); they are raised
# to WARNING explicitly (so their calls return at once), and a handler filter holds back any other third-party
# logger's lines below WARNING.
THIRD_PARTY = ("aiosqlite", "psycopg", "psycopg.pool", "asyncio", "grpc", "hpack", "concurrent")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

jobs_log = logging.getLogger("reelscan.service.jobs.events")
scan_log = logging.getLogger("reelscan.service.scan.events")
rpc_log = logging.getLogger("reelscan.service.api.rpc")
server_log = logging.getLogger("reelscan.service")


@dataclass(frozen=True, slots=True)
class LogLevels:
    """A parsed --log-level: reelscan's level and the loggers named explicitly."""

    level: int
    loggers: Mapping[str, int]

    @property
    def root_name(self) -> str:
        return logging.getLevelName(self.level)


def _level(text: str, spec: str) -> int:
    name = text.strip().upper()
    if name == "WARN":
        name = "WARNING"
    if name not in LEVELS:
        raise ValueError(
            f"invalid level {text.strip()!r} (choose from {', '.join(LEVELS)}; syntax LEVEL[,LOGGER=LEVEL...])"
        )
    return int(logging.getLevelName(name))


def parse_log_levels(spec: str) -> LogLevels:
    """Parses `LEVEL[,LOGGER=LEVEL...]` (either part optional; INFO by default). Raises ValueError."""
    level = logging.INFO
    loggers: dict[str, int] = {}
    seen_level = False
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, eq, value = part.partition("=")
        if eq:
            if not name.strip() or any(c.isspace() for c in name.strip()):
                raise ValueError(f"bad logger name {name.strip()!r} in {spec!r} (expected LOGGER=LEVEL)")
            loggers[name.strip()] = _level(value, spec)
        elif seen_level:
            raise ValueError(f"{spec!r} names two levels; give one LEVEL, then LOGGER=LEVEL items")
        else:
            level = _level(part, spec)
            seen_level = True
    return LogLevels(level, loggers)


def _escape_controls(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


class TextFormatter(logging.Formatter):
    """The classic one-line format; control characters in the message are escaped (tracebacks stay as they are)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return _escape_controls(super().formatMessage(record))


_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # ASCII: a file name that is not UTF-8 (surrogate escapes) still makes valid JSON.
        return json.dumps(out, default=str)


class _ThirdPartyFilter(logging.Filter):
    """Drops records below WARNING of loggers outside reelscan unless --log-level named them (or a parent)."""

    def __init__(self, named: Mapping[str, int]) -> None:
        super().__init__()
        self._named = tuple(named)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or record.name == OWN_LOGGER or record.name.startswith(OWN_LOGGER + "."):
            return True
        return any(record.name == n or record.name.startswith(n + ".") for n in self._named)


def configure_logging(spec: str, fmt: str = "text", stream: TextIO | None = None) -> LogLevels:
    """Sets up the root logger for `reelscan serve`: one handler on stderr in `fmt` (text or json)."""
    levels = parse_log_levels(spec)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ThirdPartyFilter(levels.loggers))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(levels.level)
    for name in THIRD_PARTY:
        if name not in levels.loggers:
            logging.getLogger(name).setLevel(max(levels.level, logging.WARNING))
    for name, level in levels.loggers.items():
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(True)
    named = ", ".join(f"{name}={logging.getLevelName(level)}" for name, level in levels.loggers.items())
    logging.getLogger(__name__).debug(
        "logging at %s%s; loggers outside reelscan at WARNING or above unless named",
        levels.root_name,
        f", {named}" if named else "",
    )
    return levels


# ---- job events as log lines --------------------------------------------------------------------------------


def _root(job: Job) -> str:
    path = job.spec.get("path", "")
    return str(path)


def _duration(job: Job) -> float | None:
    if job.start_time is None or job.finish_time is None:
        return None
    return max(0.0, job.finish_time - job.start_time)


def _counts(result: Mapping[str, int]) -> str:
    shown = [f"{value} {name.replace('_', ' ')}" for name, value in result.items() if value or name == "discovered"]
    return ", ".join(shown) if shown else "no counts"


class LogTelemetry(Telemetry):
    """Job, probe-worker and refused-RPC events as log lines with their fields (see the module docstring)."""

    def job_accepted(self, job: Job, *, existing: bool, peer: str) -> None:
        fields = {
            "event": "job_accepted",
            "job_id": job.id,
            "kind": job.kind.name,
            "root": _root(job),
            "peer": peer,
            "existing": existing,
            "timeout_s": job.timeout_s,
        }
        if existing:
            jobs_log.info(
                "job %s already %s for %s: returned to %s instead of a new one",
                job.id,
                job.state.name,
                fields["root"],
                peer or "a caller",
                extra=fields,
            )
            return
        jobs_log.info(
            "job %s accepted: %s of %s, requested by %s",
            job.id,
            job.kind.name.lower(),
            fields["root"],
            peer or "unknown",
            extra=fields,
        )

    def job_started(self, job: Job) -> None:
        waited = None if job.start_time is None else max(0.0, job.start_time - job.create_time)
        jobs_log.info(
            "job %s started on replica %s (%s)%s",
            job.id,
            job.owner,
            job.owner_address or "no address",
            "" if waited is None else f" after {waited:.2f}s in the queue",
            extra={
                "event": "job_started",
                "job_id": job.id,
                "kind": job.kind.name,
                "root": _root(job),
                "replica": job.owner,
                "replica_address": job.owner_address,
                "queued_s": None if waited is None else round(waited, 3),
            },
        )

    def job_cancel_requested(self, job: Job, *, peer: str) -> None:
        if job.state is JobState.CANCELLED:
            what = "it was pending: cancelled at once" if job.start_time is None else "it is cancelled"
        elif job.terminal:
            what = f"it already ended {job.state.name}: nothing to cancel"
        else:
            what = f"it is {job.state.name}: stopping it"
        jobs_log.info(
            "job %s: cancel requested by %s (%s)",
            job.id,
            peer or "unknown",
            what,
            extra={
                "event": "job_cancel_requested",
                "job_id": job.id,
                "kind": job.kind.name,
                "peer": peer,
                "state": job.state.name,
            },
        )

    def job_finished(self, job: Job, *, previous: JobState) -> None:
        duration = _duration(job)
        discovered = job.result.get("discovered")
        rate = discovered / duration if duration and discovered is not None else None
        fields: dict[str, Any] = {
            "event": "job_finished",
            "job_id": job.id,
            "kind": job.kind.name,
            "root": _root(job),
            "state": job.state.name,
            "previous_state": previous.name,
            "replica": job.owner,
            "duration_s": None if duration is None else round(duration, 3),
            "files_per_s": None if rate is None else round(rate, 1),
            "result": dict(job.result),
        }
        how = ""
        if job.error is not None:
            fields["error_code"] = job.error.code
            fields["error_message"] = job.error.message
            how = f" ({job.error.message})"
        took = "" if duration is None else f" after {duration:.2f}s"
        speed = "" if rate is None else f" ({rate:.1f} files/s)"
        level = logging.WARNING if job.state in (JobState.FAILED, JobState.TIMED_OUT) else logging.INFO
        jobs_log.log(
            level,
            "job %s %s%s%s: %s%s",
            job.id,
            job.state.name,
            took,
            how,
            _counts(job.result),
            speed,
            extra=fields,
        )

    def job_requeued(self, job: Job) -> None:
        jobs_log.info(
            "job %s handed back as PENDING: this server is shutting down (it runs again from the start elsewhere, "
            "or here after a restart)",
            job.id,
            extra={"event": "job_requeued", "job_id": job.id, "kind": job.kind.name, "root": _root(job)},
        )

    def job_recovered(self, job: Job) -> None:
        jobs_log.warning(
            "job %s was interrupted by a crash of the server running it: now %s (interrupted %d time(s))",
            job.id,
            job.state.name,
            job.recoveries if job.state is JobState.PENDING else job.recoveries + 1,
            extra={
                "event": "job_recovered",
                "job_id": job.id,
                "kind": job.kind.name,
                "root": _root(job),
                "state": job.state.name,
                "recoveries": job.recoveries,
            },
        )

    def job_pruned(self, job: Job) -> None:
        age = None if job.finish_time is None else max(0.0, time.time() - job.finish_time)
        jobs_log.info(
            "job %s pruned (%s, finished %s ago)",
            job.id,
            job.state.name,
            "?" if age is None else f"{age:.0f}s",
            extra={"event": "job_pruned", "job_id": job.id, "kind": job.kind.name, "state": job.state.name},
        )

    def probe_failed(self, path: str, kind: str, reason: str, seconds: float) -> None:
        if scan_log.isEnabledFor(logging.DEBUG):
            scan_log.debug(
                "probe of %s failed (%s): %s",
                path,
                kind,
                reason,
                extra={"event": "probe_failed", "path": path, "kind": kind, "reason": reason, "seconds": seconds},
            )

    def worker_replaced(self, *, cause: str, pid: int | None, file: str, exit_status: int | None, reason: str) -> None:
        signal = -exit_status if exit_status is not None and exit_status < 0 else None
        if exit_status is None:
            ended = "exit status unknown"
        elif signal is not None:
            ended = f"killed by signal {signal}"
        else:
            ended = f"exit code {exit_status}"
        # A worker killed because its scan was cancelled is routine; crashes, timeouts and garbage are not.
        level = logging.INFO if cause == "cancel" else logging.WARNING
        scan_log.log(
            level,
            "probe worker pid %s replaced (%s): %s%s; %s",
            pid,
            cause,
            reason,
            f" while probing {file}" if file else "",
            ended,
            extra={
                "event": "probe_worker_replaced",
                "cause": cause,
                "pid": pid,
                "file": file,
                "exit_status": exit_status,
                "signal": signal,
                "reason": reason,
            },
        )

    def rpc_refused(self, method: str, code: str, peer: str, detail: str) -> None:
        rpc_log.info(
            "refused %s from %s: %s: %s",
            method,
            peer or "unknown",
            code,
            detail,
            extra={"event": "rpc_refused", "method": method, "code": code, "peer": peer, "detail": detail},
        )


def log_configuration(fields: Mapping[str, Any]) -> None:
    """The start-up line with the effective configuration (`fields` hold no secrets: see describe_settings)."""
    shown = ", ".join(f"{k}={_show(v)}" for k, v in fields.items())
    server_log.info("configuration: %s", shown, extra={"event": "server_config", **fields})


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)
