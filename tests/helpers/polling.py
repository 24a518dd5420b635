"""Waiting for something to become true over the API, with a bound and the last value in the failure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def poll(what: Callable[[], Awaitable[T]], predicate: Callable[[T], bool], seconds: float) -> T:
    """Awaits `what()` until `predicate` holds for its value; AssertionError with the last value after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = await what()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {seconds}s")
        await asyncio.sleep(0.02)
