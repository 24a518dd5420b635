"""Small timing helpers for the engine: a leading+trailing throttle and a sliding-window rate meter."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class Throttle:
    """Runs `fn` at most once per `interval_s`: soon when the last run is long enough ago, otherwise once when the
    interval ends. A poke is therefore never lost, only merged with the pokes around it.

    "Soon" is the next turn of the event loop, not inside poke(): a caller that changes several things in a row
    (a handler reporting progress, then its result counts) pokes once per change, and they must land in one run
    (one published snapshot), not the first change alone with the others a whole interval later."""

    def __init__(self, interval_s: float | Callable[[], float], fn: Callable[[], None]) -> None:
        self._interval = interval_s if callable(interval_s) else (lambda: interval_s)
        self._fn = fn
        self._loop = asyncio.get_running_loop()
        self._last = float("-inf")
        self._handle: asyncio.Handle | None = None

    def poke(self) -> None:
        if self._handle is not None:
            return  # a trailing run is already due and will see the newest state
        wait = self._last + self._interval() - self._loop.time()
        if wait <= 0:
            self._handle = self._loop.call_soon(self._run)
        else:
            self._handle = self._loop.call_later(wait, self._run)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _run(self) -> None:
        self._handle = None
        self._last = self._loop.time()
        self._fn()


class RateMeter:
    """Items per second over roughly the last `window_s`, from (time, done) samples.

    A sliding window rather than the instantaneous rate smooths out bursty work (e.g. many unchanged files then a
    slow probe); a short window still follows real changes of pace. Reports 0 until the samples span `min_span_s`.
    """

    def __init__(self, window_s: float = 5.0, min_span_s: float = 0.5) -> None:
        self._window = window_s
        self._min_span = min_span_s
        self._samples: deque[tuple[float, int]] = deque()

    def reset(self) -> None:
        self._samples.clear()

    def update(self, now: float, done: int) -> float:
        if self._samples and done < self._samples[-1][1]:
            self._samples.clear()  # the count restarted (new stage): old samples describe other work
        self._samples.append((now, done))
        # Keep one sample at or before the window start, so the window is fully covered.
        while len(self._samples) > 2 and self._samples[1][0] <= now - self._window:
            self._samples.popleft()
        t0, d0 = self._samples[0]
        span = now - t0
        if span < self._min_span:
            return 0.0
        return (done - d0) / span
