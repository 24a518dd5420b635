"""Wiring of what one server tells its operators: the telemetry it hands to the engine, prober and API (log lines
always; Prometheus metrics with --metrics-listen), the /metrics endpoint, the periodic count of jobs by state, and
the start-up line with the effective configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from reelscan.service.api.observe import RpcObserver
from reelscan.service.config import ConfigError, Settings
from reelscan.service.jobs.engine import JobEngine
from reelscan.service.telemetry.events import Fanout, Telemetry
from reelscan.service.telemetry.logs import LogTelemetry, log_configuration
from reelscan.service.telemetry.metrics import MetricsServer, PrometheusTelemetry

log = logging.getLogger(__name__)
# Jobs by state come from a COUNT over the jobs table: every few seconds is fresh enough for a 15 s scrape.
CENSUS_INTERVAL_S = 5.0


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("reelscan")
    except metadata.PackageNotFoundError:
        return "unknown"


class Observability:
    def __init__(self, settings: Settings, *, backend: str) -> None:
        self.settings = settings
        self.logs = LogTelemetry()
        self.metrics: PrometheusTelemetry | None = None
        self.telemetry: Telemetry = self.logs
        if settings.metrics_listen:
            self.metrics = PrometheusTelemetry(
                backend=backend, queue_limit=settings.max_queued_jobs, version=_version()
            )
            self.telemetry = Fanout([self.logs, self.metrics])
        # Unary RPCs are timed only for the latency histogram: no clock reads when metrics are off.
        self.rpc = RpcObserver(self.telemetry, timed=self.metrics is not None)
        self._server: MetricsServer | None = None
        self._census: asyncio.Task[None] | None = None

    def serve_metrics(self) -> str:
        """Binds --metrics-listen and serves /metrics; returns HOST:PORT as bound ("" when metrics are off)."""
        if self.metrics is None:
            return ""
        listen = self.settings.metrics_listen
        try:
            self._server = MetricsServer.start(listen, self.metrics.registry)
        except (OSError, ValueError) as error:
            raise ConfigError(f"cannot serve metrics on --metrics-listen {listen}: {error}") from error
        host = listen.rpartition(":")[0]
        return f"{host}:{self._server.port}"

    def start(self, engine: JobEngine) -> None:
        if self.metrics is not None:
            self._census = asyncio.create_task(self._count_jobs(engine), name="reelscan-metrics-census")

    async def _count_jobs(self, engine: JobEngine) -> None:
        failing = False
        while True:
            try:
                self.telemetry.jobs_by_state(await engine.count_by_state())
                failing = False
            except Exception as error:  # the database may be away; its outage is logged elsewhere
                if not failing:
                    log.info("counting jobs by state for metrics failed (%s); will retry", error)
                failing = True
            await asyncio.sleep(CENSUS_INTERVAL_S)

    async def close(self) -> None:
        if self._census is not None:
            self._census.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._census
        if self._server is not None:
            await asyncio.to_thread(self._server.close)
            self._server = None

    def log_configuration(self, *, listen: str, database: str, backend: str, tls: bool, metrics: str) -> None:
        log_configuration(describe_settings(self.settings, listen, database, backend, tls, metrics))


def describe_settings(
    settings: Settings, listen: str, database: str, backend: str, tls: bool, metrics: str
) -> dict[str, Any]:
    """The effective configuration as an operator needs it at start-up: no secrets (the database names no
    password, token and key files are named, never read here)."""
    s = settings
    fields: dict[str, Any] = {
        "listen": listen,
        "database": database,
        "backend": backend,
        "allow_roots": [str(r) for r in s.allow_roots] or "any absolute path (loopback, no --allow-root)",
        "prober": s.prober,
        "probe_workers": s.probe_workers,
        "probe_concurrency": s.probe_concurrency,
        "probe_timeout_s": s.probe_timeout_s,
        "max_concurrent_jobs": s.max_concurrent_jobs,
        "max_queued_jobs": s.max_queued_jobs,
        "max_watchers": s.max_watchers,
        "job_timeout_s": s.job_timeout_s,
        "job_retention_s": s.job_retention_s,
        "lease_ttl_s": s.lease_ttl_s,
        "shard_threshold": s.shard_threshold,
        "shard_size": s.shard_size,
        "grace_period_s": s.grace_period_s,
        "max_message_bytes": s.max_message_bytes,
        "extensions": list(s.extensions),
        "tls": ("mutual" if s.tls_client_ca is not None else "on") if tls else "off",
        "auth": "bearer token" if s.auth_token_file is not None else "off",
        "metrics": f"http://{metrics}/metrics" if metrics else "off",
        "log_level": s.log_level,
        "log_format": s.log_format,
    }
    if s.fault_injection or s.probe_delay_s:
        fields["testing"] = f"fault_injection={s.fault_injection}, probe_delay_s={s.probe_delay_s:g}"
    return fields
