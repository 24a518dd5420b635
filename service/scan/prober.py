"""The probe backend interface, and choosing one from the settings (--prober pyav|ffprobe)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence
from typing import Protocol

from reelscan.service.config import Settings
from reelscan.service.scan.media_info import MediaInfo, ProbeFailure
from reelscan.service.telemetry.events import NO_TELEMETRY, Telemetry

# (index into the caller's list of paths, outcome, seconds the probe took including its wait in a worker's queue)
ProbeResult = tuple[int, MediaInfo | ProbeFailure, float]


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


async def probe_stream(prober: Prober, paths: Sequence[str]) -> AsyncGenerator[list[ProbeResult], None]:
    """Probes `paths`, yielding results in batches as they finish (in no particular order). Uses the backend's own
    batched `probe_stream` when it has one (the PyAV pool); otherwise keeps `concurrency` single probes in flight.
    Closing the generator early cancels (and so kills) the probes in flight."""
    own = getattr(prober, "probe_stream", None)
    if own is not None:
        async with contextlib.aclosing(own(paths)) as batches:
            async for batch in batches:
                yield batch
        return
    loop = asyncio.get_running_loop()
    indexes = iter(range(len(paths)))
    results: asyncio.Queue[ProbeResult | BaseException] = asyncio.Queue()

    async def lane() -> None:
        for index in indexes:  # lanes share one iterator: each file is taken by exactly one lane
            started = loop.time()
            try:
                outcome = await prober.probe(paths[index])
            except Exception as error:
                results.put_nowait(error)
                return
            results.put_nowait((index, outcome, loop.time() - started))

    lanes = [asyncio.ensure_future(lane()) for _ in range(max(1, min(prober.concurrency, len(paths))))]
    try:
        received = 0
        while received < len(paths):
            item = await results.get()
            batch = []
            while True:
                if isinstance(item, BaseException):
                    raise item
                batch.append(item)
                if results.empty():
                    break
                item = results.get_nowait()
            received += len(batch)
            yield batch
    finally:
        for lane_task in lanes:
            lane_task.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)


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
        threads=settings.probe_concurrency,
    )
