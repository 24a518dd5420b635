"""Domain errors, and the one table from each to its status code.

Domain code raises these. Each class names its code (`code`, a google.rpc.Code number): the gRPC layer answers an
RPC that raised one with that status (api/status.py), and a job whose handler raised one ends with that code in
its JobError (jobs/outcome.py), so the two can never disagree. The numbers are spelled out here (`Code`) so that
the engine, stores and scanner stay free of gRPC and protobuf imports.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class Code(enum.IntEnum):
    """google.rpc.Code values (the same numbers and names as grpc.StatusCode and google.rpc.code_pb2)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class ReelscanError(Exception):
    """Base class of every error that is meant to reach a client with a specific status code: its class's `code`.
    (Raised as itself, it is INTERNAL: subclasses say what went wrong.)"""

    code: ClassVar[Code] = Code.INTERNAL

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # The request field at fault, if any; surfaced as google.rpc.BadRequest field violations.
        self.field = field


class InvalidArgument(ReelscanError):
    """The request is malformed regardless of server state (INVALID_ARGUMENT)."""

    code = Code.INVALID_ARGUMENT


class NotFound(ReelscanError):
    """The named job, video or path does not exist (NOT_FOUND)."""

    code = Code.NOT_FOUND


class PermissionDenied(ReelscanError):
    """The path lies outside every allowed root (PERMISSION_DENIED)."""

    code = Code.PERMISSION_DENIED


class FailedPrecondition(ReelscanError):
    """The request is valid but the target is in the wrong state (FAILED_PRECONDITION)."""

    code = Code.FAILED_PRECONDITION


class ResourceExhausted(ReelscanError):
    """A limit was reached: queued jobs, watchers (RESOURCE_EXHAUSTED)."""

    code = Code.RESOURCE_EXHAUSTED


class Unavailable(ReelscanError):
    """The server cannot serve this now, e.g. while shutting down; clients should retry (UNAVAILABLE)."""

    code = Code.UNAVAILABLE


class Aborted(ReelscanError):
    """Work was cut short by a failure of a part it depends on, e.g. a shard of a sharded scan (ABORTED)."""

    code = Code.ABORTED


def code_of(error: BaseException) -> Code:
    """The status code an exception ends an RPC or a job with: a domain error's own, INTERNAL for anything else
    (a bug: the RPC's or job's message then hides the details, which are logged)."""
    return error.code if isinstance(error, ReelscanError) else Code.INTERNAL
