"""The probe backend interface, and choosing one from the settings (--prober pyav|ffprobe)."""

from __future__ import annotations

from typing import Protocol

from reelscan.service.config import Settings
from reelscan.service.scan.media_info import MediaInfo, ProbeFailure
from reelscan.service.telemetry.events import NO_TELEMETRY, Telemetry


class ProberUnavailable(RuntimeError):
    """The backend cannot probe at all (workers cannot start, ffprobe missing, pool closed): the scan fails."""


class Prober(Protocol):
    """Probes files without blocking the event loop. Cancelling `probe` kills that probe's work promptly."""

    @property
    def concurrency(self) -> int:
        """How many probes a scan should keep in flight to use the backend fully."""
        ...

    async def start(self) -> None: ...

    async def probe(self, path: str) -> MediaInfo | ProbeFailure:
        """Probes one file. Bad files give a ProbeFailure; only ProberUnavailable (or cancellation) is raised."""
        ...

    async def close(self) -> None: ...


def make_prober(settings: Settings, telemetry: Telemetry = NO_TELEMETRY) -> Prober:
    if settings.prober == "ffprobe":
        from reelscan.service.scan.probe_ffprobe import FfprobeProber

        return FfprobeProber(
            concurrency=settings.probe_workers,
            timeout_s=settings.probe_timeout_s,
            probe_delay_s=settings.probe_delay_s,
        )
    from reelscan.service.scan.pool import ProbePool

    return ProbePool(
        size=settings.probe_workers,
        timeout_s=settings.probe_timeout_s,
        probe_delay_s=settings.probe_delay_s,
        fault_injection=settings.fault_injection,
        telemetry=telemetry,
    )
