"""How a job's end is described: google.rpc.Code numbers for JobError, and the mapping from handler exceptions.

The numbers are google.rpc.Code values (the API layer puts them in a google.rpc.Status); they are spelled out here
so the engine stays free of gRPC and protobuf imports.
"""

from __future__ import annotations

import enum

from reelscan.service import errors
from reelscan.service.jobs.model import JobError


class RpcCode(enum.IntEnum):
    """The google.rpc.Code values a job's error can carry."""

    CANCELLED = 1
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    INTERNAL = 13
    UNAVAILABLE = 14


_CODE_OF: dict[type[errors.ReelscanError], RpcCode] = {
    errors.InvalidArgument: RpcCode.INVALID_ARGUMENT,
    errors.NotFound: RpcCode.NOT_FOUND,
    errors.PermissionDenied: RpcCode.PERMISSION_DENIED,
    errors.FailedPrecondition: RpcCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: RpcCode.RESOURCE_EXHAUSTED,
}


def error_for_exception(error: BaseException) -> JobError:
    """A handler's exception as the job's error: domain errors keep their code and message; anything else is a bug
    in the handler and becomes INTERNAL, naming the exception type so it can be found in the log."""
    if isinstance(error, errors.ReelscanError):
        for cls in type(error).__mro__:
            if cls in _CODE_OF:
                return JobError(int(_CODE_OF[cls]), error.message)
        return JobError(int(RpcCode.INTERNAL), error.message)
    detail = str(error) or "no message"
    return JobError(int(RpcCode.INTERNAL), f"internal error: {type(error).__name__}: {detail}")
