"""Checks of request fields that several servicers share (the limits themselves are in reelscan.limits)."""

from __future__ import annotations

from reelscan.limits import MAX_ID_CHARS
from reelscan.service.errors import InvalidArgument


def job_id(value: str, name: str = "job_id") -> str:
    """A request's job id (field `name`), checked: required, and at most MAX_ID_CHARS characters (longer is never
    an id)."""
    if not value:
        raise InvalidArgument(f"{name} is required", field=name)
    if len(value) > MAX_ID_CHARS:
        raise InvalidArgument(f"{name} is longer than {MAX_ID_CHARS} characters", field=name)
    return value
