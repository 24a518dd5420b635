"""Domain errors. Domain code raises these; the gRPC layer maps each to its status code (see api/status.py).

They carry no gRPC types so that the engine, stores and scanner stay transport-agnostic.
"""

from __future__ import annotations


class ReelscanError(Exception):
    """Base class of every error that is meant to reach a client with a specific status code."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # The request field at fault, if any; surfaced as google.rpc.BadRequest field violations.
        self.field = field


class InvalidArgument(ReelscanError):
    """The request is malformed regardless of server state (INVALID_ARGUMENT)."""


class NotFound(ReelscanError):
    """The named job, video or path does not exist (NOT_FOUND)."""


class PermissionDenied(ReelscanError):
    """The path lies outside every allowed root (PERMISSION_DENIED)."""


class FailedPrecondition(ReelscanError):
    """The request is valid but the target is in the wrong state (FAILED_PRECONDITION)."""


class ResourceExhausted(ReelscanError):
    """A limit was reached: queued jobs, watchers (RESOURCE_EXHAUSTED)."""


class Unavailable(ReelscanError):
    """The server cannot serve this now, e.g. while shutting down; clients should retry (UNAVAILABLE)."""
