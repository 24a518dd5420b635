"""ServerService: what this server is and how it is configured (GetServerInfo), for operators and their tools.

The answer is built from the settings, the package's version and revision, and the job engine's identity; it reads
nothing from the database, so it answers while the database is down. Secrets never enter it: the auth token and
TLS keys are not read here at all, and the PostgreSQL location is rebuilt from the URL's host, port, database and
user only (a password in the URL, in its query string or in --db-password-file cannot leak into it).

The prober's library versions are asked of a short-lived Python process on the first call (PyAV loads FFmpeg,
~17 MB the server process would otherwise keep for good; the probe workers are where PyAV runs), then cached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import sys
import time
from typing import Any

import grpc
from google.protobuf import duration_pb2

from reelscan.service import version
from reelscan.service.config import Settings
from reelscan.service.jobs.engine import JobEngine
from reelscan.v1 import server_service_pb2, server_service_pb2_grpc

log = logging.getLogger(__name__)

VERSIONS_TIMEOUT_S = 20.0
_PYAV_VERSIONS = """
import json, av
libs = {name: ".".join(str(part) for part in v) for name, v in av.library_versions.items()}
print(json.dumps({"pyav": av.__version__, "ffmpeg": str(getattr(av, "ffmpeg_version_info", "")), "libs": libs}))
"""


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def database_info(settings: Settings) -> server_service_pb2.DatabaseInfo:
    """The database as an operator names it, without any password."""
    if not settings.db_url:
        return server_service_pb2.DatabaseInfo(
            kind=server_service_pb2.DATABASE_KIND_SQLITE, location=str(settings.db_path.absolute())
        )
    from psycopg.conninfo import conninfo_to_dict  # a PostgreSQL server has loaded psycopg already

    info: dict[str, Any] = conninfo_to_dict(settings.db_url)
    host = str(info.get("host") or info.get("hostaddr") or "")
    port = int(str(info.get("port") or 5432).split(",")[0])
    name = str(info.get("dbname") or "")
    user = str(info.get("user") or "")
    shown_host = f"[{host}]" if ":" in host else host
    location = f"postgresql://{user + '@' if user else ''}{shown_host}:{port}/{name}"
    return server_service_pb2.DatabaseInfo(
        kind=server_service_pb2.DATABASE_KIND_POSTGRESQL, location=location, host=host, port=port, name=name, user=user
    )


def static_info(settings: Settings) -> server_service_pb2.ServerInfo:
    """Everything that does not change while the server runs, but the prober's library versions. Blocking (git)."""
    seconds = _duration
    limits = server_service_pb2.ServerLimits(
        max_concurrent_jobs=settings.max_concurrent_jobs,
        max_queued_jobs=settings.max_queued_jobs,
        max_watchers=settings.max_watchers,
        job_timeout=seconds(settings.job_timeout_s),
        probe_timeout=seconds(settings.probe_timeout_s),
        probe_workers=settings.probe_workers,
        job_retention=seconds(settings.job_retention_s),
        max_message_bytes=settings.max_message_bytes,
        lease_ttl=seconds(settings.lease_ttl_s),
        grace_period=seconds(settings.grace_period_s),
        shard_threshold=settings.shard_threshold,
        shard_size=settings.shard_size,
        probe_concurrency=settings.probe_concurrency,
    )
    return server_service_pb2.ServerInfo(
        version=version.package_version(),
        build_revision=version.build_revision(),
        prober=server_service_pb2.ProberInfo(name=settings.prober, workers=settings.probe_workers),
        allowed_roots=[str(root) for root in settings.allow_roots],
        extensions=settings.extensions,
        limits=limits,
        database=database_info(settings),
        tls=settings.tls_cert is not None,
        client_certificates_required=settings.tls_client_ca is not None,
        auth_required=settings.auth_token_file is not None,
        python_version=platform.python_version(),
        grpc_version=grpc.__version__,
    )


async def _run(*argv: str) -> str:
    """stdout of a short command, or "" if it cannot run, fails or takes too long."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
    except OSError:
        return ""
    try:
        async with asyncio.timeout(VERSIONS_TIMEOUT_S):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return ""
    return out.decode("utf-8", "replace") if proc.returncode == 0 else ""


async def prober_versions(settings: Settings) -> server_service_pb2.ProberInfo:
    """The PyAV and FFmpeg versions (and ffprobe's, with that backend), from child processes."""
    prober = server_service_pb2.ProberInfo()
    raw = await _run(sys.executable, "-c", _PYAV_VERSIONS)
    try:
        found = json.loads(raw) if raw else {}
        prober.pyav_version = str(found.get("pyav", ""))
        prober.ffmpeg_version = str(found.get("ffmpeg", ""))
        prober.library_versions.update({str(k): str(v) for k, v in found.get("libs", {}).items()})
    except (ValueError, AttributeError):
        log.warning("could not read the PyAV and FFmpeg versions: %r", raw[:200])
    if settings.prober == "ffprobe":
        lines = (await _run("ffprobe", "-version")).splitlines()
        prober.ffprobe_version = lines[0].strip() if lines else ""
    return prober


class ServerServicer(server_service_pb2_grpc.ServerServiceServicer):
    """GetServerInfo for one server. Build it with `await ServerServicer.create(...)` as the server starts."""

    def __init__(self, info: server_service_pb2.ServerInfo, settings: Settings, engine: JobEngine) -> None:
        self._info = info
        self._settings = settings
        self._engine = engine
        self._start_wall_ns = time.time_ns()
        self._start_monotonic = time.monotonic()
        self._info.start_time.FromNanoseconds(self._start_wall_ns)
        self._versions: asyncio.Task[server_service_pb2.ProberInfo] | None = None

    @classmethod
    async def create(cls, settings: Settings, engine: JobEngine) -> ServerServicer:
        return cls(await asyncio.to_thread(static_info, settings), settings, engine)

    async def _prober_versions(self) -> server_service_pb2.ProberInfo:
        # One child process however many calls arrive at once; a failed attempt is retried by the next call.
        if self._versions is None or (self._versions.done() and self._versions.exception() is not None):
            self._versions = asyncio.create_task(prober_versions(self._settings), name="reelscan-prober-versions")
        return await asyncio.shield(self._versions)

    async def GetServerInfo(
        self, request: server_service_pb2.GetServerInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> server_service_pb2.GetServerInfoResponse:
        info = server_service_pb2.ServerInfo()
        info.CopyFrom(self._info)
        info.prober.MergeFrom(await self._prober_versions())
        info.uptime.CopyFrom(_duration(time.monotonic() - self._start_monotonic))
        info.replica_id = self._engine.owner.id
        info.replica_address = self._engine.address
        return server_service_pb2.GetServerInfoResponse(info=info)
