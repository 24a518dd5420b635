"""How a job's end is described: google.rpc.Code numbers for JobError, and the mapping from handler exceptions.

The code of a domain error is the one its class names in service/errors.py, the same one the gRPC layer answers an
RPC with (api/status.py); numbers, not gRPC types, so the engine stays free of gRPC and protobuf imports.
"""

from __future__ import annotations

from reelscan.service import errors
from reelscan.service.jobs.model import JobError

# The google.rpc.Code values a job's error carries (one enum for the whole service: errors.Code).
RpcCode = errors.Code


def error_for_exception(error: BaseException) -> JobError:
    """A handler's exception as the job's error: domain errors keep their code and message; anything else is a bug
    in the handler and becomes INTERNAL, naming the exception type so it can be found in the log."""
    if isinstance(error, errors.ReelscanError):
        return JobError(int(error.code), error.message)
    detail = str(error) or "no message"
    return JobError(int(errors.code_of(error)), f"internal error: {type(error).__name__}: {detail}")
