"""Wiring: builds the stores, probe pool, job engine and servicers, plus health and reflection; start and stop.

One factory (`ReelscanServer.start`) owns every server option, each commented, in the spirit of Flower's
flwr/common/grpc.py: the rest of the service never touches grpc.aio.server() directly.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from reelscan.service.api.auth import BearerTokenInterceptor, load_token
from reelscan.service.api.job_servicer import JobServicer
from reelscan.service.api.library_servicer import LibraryServicer
from reelscan.service.api.observe import HealthServicer, add_observed
from reelscan.service.api.scan_servicer import ScanServicer
from reelscan.service.api.server_servicer import ServerServicer
from reelscan.service.api.status import add_servicer
from reelscan.service.config import Settings
from reelscan.service.jobs.engine import JobEngine
from reelscan.service.jobs.model import JobKind
from reelscan.service.observability import Observability
from reelscan.service.scan.handler import ScanJobHandler
from reelscan.service.scan.library_store import LibraryStore
from reelscan.service.scan.prober import Prober, ProberUnavailable, make_prober
from reelscan.service.storage import Stores, open_stores
from reelscan.v1 import (
    job_service_pb2,
    job_service_pb2_grpc,
    library_pb2,
    library_pb2_grpc,
    scan_service_pb2,
    scan_service_pb2_grpc,
    server_service_pb2,
    server_service_pb2_grpc,
)

log = logging.getLogger(__name__)
HEALTH_CHECK_INTERVAL_S = 0.5

SERVICE_NAMES = (
    scan_service_pb2.DESCRIPTOR.services_by_name["ScanService"].full_name,
    job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    library_pb2.DESCRIPTOR.services_by_name["LibraryService"].full_name,
    server_service_pb2.DESCRIPTOR.services_by_name["ServerService"].full_name,
)


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    """Channel arguments for the server, tuned for long-lived WatchJob streams."""
    return [
        # Bound request and response sizes: an oversized request gets RESOURCE_EXHAUSTED before any handler runs.
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Ping idle connections every 30 s so dead peers of long watch streams are noticed and their watchers freed.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # Let clients ping as often as every 10 s (grpc-go/grpc-js defaults) without being sent GOAWAY.
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        # Recycle connections eventually (with a grace period for in-flight calls) so load spreads after scaling.
        ("grpc.max_connection_age_ms", 24 * 3600 * 1000),
        ("grpc.max_connection_age_grace_ms", 60_000),
        # One WatchJob per stream; lots of watchers per connection are fine.
        ("grpc.max_concurrent_streams", 10_000),
        # Refuse to start if the port is already taken rather than sharing it with another process.
        ("grpc.so_reuseport", 0),
    ]


def _server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    key = settings.tls_key.read_bytes()
    cert = settings.tls_cert.read_bytes()
    ca = settings.tls_client_ca.read_bytes() if settings.tls_client_ca else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


@dataclass
class ReelscanServer:
    """A running reelscan server."""

    settings: Settings
    server: grpc.aio.Server
    port: int
    engine: JobEngine
    stores: Stores
    prober: Prober
    health: health.aio.HealthServicer
    observability: Observability | None = None
    health_watch: asyncio.Task[None] | None = None

    @property
    def library(self) -> LibraryStore:
        return self.stores.library

    @classmethod
    async def start(cls, settings: Settings) -> ReelscanServer:
        """Opens (and for SQLite, locks) the database, recovers jobs, starts the probe pool and serves."""
        if not settings.allow_roots:
            log.warning("no --allow-root given: listening on loopback, so any absolute path may be scanned")
        stores = await open_stores(settings)
        try:
            return await cls._start(settings, stores)
        except BaseException:
            await stores.close()
            raise

    @classmethod
    async def _start(cls, settings: Settings, stores: Stores) -> ReelscanServer:
        observability = Observability(settings, backend=stores.backend)
        telemetry, rpc = observability.telemetry, observability.rpc
        prober = make_prober(settings, telemetry)
        engine = JobEngine(
            stores.jobs,
            max_concurrent=settings.max_concurrent_jobs,
            max_queued=settings.max_queued_jobs,
            default_timeout_s=settings.job_timeout_s,
            retention_s=settings.job_retention_s,
            max_watchers=settings.max_watchers,
            checkpoint_interval_s=stores.checkpoint_interval_s,
            lease_ttl_s=settings.lease_ttl_s,
            telemetry=telemetry,
        )
        engine.register(JobKind.SCAN, ScanJobHandler(stores.library, prober, settings, telemetry))

        interceptors: list[grpc.aio.ServerInterceptor] = []
        if settings.auth_token_file is not None:
            # Authentication runs first so unauthenticated calls never reach a handler.
            token = await asyncio.to_thread(load_token, str(settings.auth_token_file))
            interceptors.append(BearerTokenInterceptor(token, on_denied=rpc.denied))
        server = grpc.aio.server(interceptors=interceptors, options=grpc_options(settings))
        # Our services get error mapping wrapped around each handler at registration, then the RPC observation
        # (metrics, refused-request log: api/observe.py); health is only observed, reflection left alone.
        scan_servicer = ScanServicer(engine, settings)
        add_servicer(scan_service_pb2_grpc.add_ScanServiceServicer_to_server, scan_servicer, server, rpc.instrument)
        limit = settings.max_message_bytes
        job_servicer = JobServicer(engine, max_message_bytes=limit)
        library_servicer = LibraryServicer(stores.library, engine, max_message_bytes=limit)
        add_servicer(job_service_pb2_grpc.add_JobServiceServicer_to_server, job_servicer, server, rpc.instrument)
        add_servicer(library_pb2_grpc.add_LibraryServiceServicer_to_server, library_servicer, server, rpc.instrument)
        server_servicer = await ServerServicer.create(settings, engine)
        add_servicer(
            server_service_pb2_grpc.add_ServerServiceServicer_to_server, server_servicer, server, rpc.instrument
        )

        health_servicer = HealthServicer()
        add_observed(health_pb2_grpc.add_HealthServicer_to_server, health_servicer, server, rpc)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )

        credentials = await asyncio.to_thread(_server_credentials, settings)
        # Binding happens here, before any worker process starts, so a taken port fails fast and clean.
        if credentials is None:
            port = server.add_insecure_port(settings.listen)
        else:
            port = server.add_secure_port(settings.listen, credentials)
        host = settings.host if ":" not in settings.host else f"[{settings.host}]"
        if stores.set_address is not None:
            await stores.set_address(f"{host}:{port}")  # so a refused second server can say where this one is
        engine.address = f"{host}:{port}"
        metrics = observability.serve_metrics()
        try:
            await prober.start()
            await _warm(prober)
            try:
                await engine.start()
            except BaseException:
                await prober.close()
                raise
        except BaseException:
            await observability.close()
            raise
        await server.start()
        self = cls(settings, server, port, engine, stores, prober, health_servicer, observability)
        await self._set_health(stores.connected())
        self.health_watch = asyncio.create_task(self._watch_database(), name="reelscan-health")
        observability.start(engine)
        observability.log_configuration(
            listen=f"{host}:{port}",
            database=stores.where,
            backend=stores.backend,
            tls=bool(credentials),
            metrics=metrics,
        )
        log.info(
            "reelscan listening on %s:%d (%s), database %s (%s), replica %s",
            host,
            port,
            "TLS" if credentials else "plaintext",
            stores.where,
            stores.backend,
            engine.owner.id,
        )
        return self

    async def _set_health(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def _watch_database(self) -> None:
        """NOT_SERVING while the database cannot be reached (a load balancer then sends clients elsewhere)."""
        serving = self.stores.connected()
        while True:
            await asyncio.sleep(HEALTH_CHECK_INTERVAL_S)
            now = self.stores.connected()
            if now != serving:
                serving = now
                log.warning(
                    "database %s: health is now %s",
                    "back" if now else "unreachable",
                    "SERVING" if now else "NOT_SERVING",
                )
                await self._set_health(now)

    async def stop(self, grace_s: float | None = None) -> None:
        """Graceful stop: NOT_SERVING first, then let RPCs finish within the grace period, then stop jobs."""
        grace = self.settings.grace_period_s if grace_s is None else grace_s
        if self.health_watch is not None:
            self.health_watch.cancel()
        await self.health.enter_graceful_shutdown()
        # Closing the engine first ends WatchJob streams at once with UNAVAILABLE (not OK: the job is not finished),
        # which tells clients to watch again once the server is back, instead of cutting them at the grace deadline.
        try:
            await self.engine.close()
            await self.server.stop(grace)
            await self.prober.close()
            if self.observability is not None:
                await self.observability.close()
        finally:
            await self.stores.close()  # the SQLite lock last: another server may open the file from here on

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()


# Workers start in parallel in well under a second (import av, a tiny in-memory probe per container); past this,
# something is wrong with them, and serving without them lets scans fail with the reason instead of a hung start.
WARM_UP_TIMEOUT_S = 10.0


async def _warm(prober: Prober) -> None:
    """Waits until the probe workers are up and warm (imports done, codecs loaded) before the server reports
    SERVING, so the first scan after start is as fast as any other."""
    wait_ready = getattr(prober, "wait_ready", None)
    if wait_ready is None:  # a backend without long-lived workers (ffprobe): nothing to warm
        return
    try:
        await wait_ready(WARM_UP_TIMEOUT_S)
    except (TimeoutError, ProberUnavailable) as error:
        log.error("probe workers are not ready (%s); serving anyway: scans fail until they are", error or "timeout")
