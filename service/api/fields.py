"""Checks of request fields that several servicers share (the limits themselves are in reelscan.limits)."""

from __future__ import annotations

from reelscan.limits import MAX_ID_CHARS
from reelscan.service.errors import InvalidArgument


def job_id(value: str) -> str:
    """A request's job_id, checked: required, and at most MAX_ID_CHARS characters (longer is never an id)."""
    if not value:
        raise InvalidArgument("job_id is required", field="job_id")
    if len(value) > MAX_ID_CHARS:
        raise InvalidArgument(f"job_id is longer than {MAX_ID_CHARS} characters", field="job_id")
    return value
