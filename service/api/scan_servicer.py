"""ScanService: StartScan validates the request (path policy in scan/paths.py) and submits a scan job."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from reelscan.service.api.job_convert import job_to_proto
from reelscan.service.config import Settings
from reelscan.service.errors import InvalidArgument
from reelscan.service.jobs.engine import JobEngine
from reelscan.service.jobs.model import JobKind
from reelscan.service.scan import paths
from reelscan.service.scan.spec import ScanSpec, normalize_extensions
from reelscan.v1 import scan_service_pb2, scan_service_pb2_grpc

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


MAX_TIMEOUT_S = 366 * 24 * 3600.0  # a year: longer is a mistake, and Job.timeout must stay representable


def _timeout_s(request: scan_service_pb2.StartScanRequest) -> float | None:
    if not request.HasField("timeout"):
        return None
    duration = request.timeout
    seconds = duration.seconds + duration.nanos / 1e9
    if not (duration.seconds >= 0 and duration.nanos >= 0 and seconds > 0):
        raise InvalidArgument("timeout must be positive", field="timeout")
    if seconds > MAX_TIMEOUT_S:
        raise InvalidArgument(f"timeout must be at most {MAX_TIMEOUT_S / 86400:g} days", field="timeout")
    return seconds


_SHARDING: dict[int, str] = {
    scan_service_pb2.SHARDING_UNSPECIFIED: "auto",
    scan_service_pb2.SHARDING_AUTO: "auto",
    scan_service_pb2.SHARDING_ALWAYS: "always",
    scan_service_pb2.SHARDING_NEVER: "never",
}


def _sharding(value: int) -> str:
    mode = _SHARDING.get(int(value))
    if mode is None:
        raise InvalidArgument(f"sharding {value} is not a known Sharding value", field="sharding")
    return mode


class ScanServicer(scan_service_pb2_grpc.ScanServiceServicer):
    def __init__(self, engine: JobEngine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings

    async def StartScan(
        self, request: scan_service_pb2.StartScanRequest, context: Context
    ) -> scan_service_pb2.StartScanResponse:
        # Path first, in the documented order (syntax, policy, existence, kind), then the other fields.
        root = await paths.validate_scan_root(request.path, self._settings.allow_roots)
        spec = ScanSpec(
            path=str(root),
            recursive=request.recursive if request.HasField("recursive") else True,
            force=request.force,
            extensions=normalize_extensions(list(request.extensions), self._settings.extensions),
            follow_symlinks=request.follow_symlinks,
            sharding=_sharding(request.sharding),
        )
        timeout_s = _timeout_s(request)
        # One active scan per root: a second request for the same root gets the pending/running job back.
        # (During shutdown the engine raises EngineClosed, which the error mapping answers as UNAVAILABLE.)
        job, existing = await self._engine.submit(
            JobKind.SCAN, spec.to_mapping(), timeout_s=timeout_s, dedup_key=str(root), peer=context.peer()
        )
        return scan_service_pb2.StartScanResponse(
            job=job_to_proto(job, self._engine.watcher_count(job.id)), existing=existing
        )
