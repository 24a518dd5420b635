"""The client's exceptions: one class per status code a caller may want to handle, all under ReelscanError.

Every failed RPC is raised as one of these (never as a bare grpc.RpcError), with the status code, the message and
the rich details the server packed into `grpc-status-details-bin` (google.rpc.ErrorInfo, BadRequest, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf import message as protobuf_message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

_STATUS_DETAILS_KEY = "grpc-status-details-bin"

# The detail types of google/rpc/error_details.proto, by full name, so an Any can be unpacked without reflection.
_DETAIL_TYPES: dict[str, type[protobuf_message.Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        error_details_pb2.ErrorInfo,
        error_details_pb2.BadRequest,
        error_details_pb2.RetryInfo,
        error_details_pb2.DebugInfo,
        error_details_pb2.QuotaFailure,
        error_details_pb2.PreconditionFailure,
        error_details_pb2.ResourceInfo,
        error_details_pb2.RequestInfo,
        error_details_pb2.Help,
        error_details_pb2.LocalizedMessage,
    )
}


class ReelscanError(Exception):
    """A failed call. `code` is the gRPC status code, `message` the server's message, `details` the decoded
    google.rpc.Status details (ErrorInfo, BadRequest, ...; an Any that cannot be decoded is kept as the Any)."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        details: Sequence[protobuf_message.Message] = (),
        method: str = "",
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.details: list[protobuf_message.Message] = list(details)
        self.method = method

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}" if self.message else self.code.name

    @property
    def error_info(self) -> error_details_pb2.ErrorInfo | None:
        """The google.rpc.ErrorInfo detail, if the server sent one (reason, domain, metadata such as `field`)."""
        return next((d for d in self.details if isinstance(d, error_details_pb2.ErrorInfo)), None)

    @property
    def field_violations(self) -> list[error_details_pb2.BadRequest.FieldViolation]:
        """Every google.rpc.BadRequest field violation the server sent."""
        return [v for d in self.details if isinstance(d, error_details_pb2.BadRequest) for v in d.field_violations]

    @property
    def retry_delay(self) -> float | None:
        """The server's google.rpc.RetryInfo hint in seconds, if it sent one."""
        info = next((d for d in self.details if isinstance(d, error_details_pb2.RetryInfo)), None)
        return info.retry_delay.ToTimedelta().total_seconds() if info is not None else None


class InvalidArgumentError(ReelscanError):
    """The request is malformed (a relative path, a negative page size, a bad page token)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(ReelscanError):
    """The job, video or path does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class PermissionDeniedError(ReelscanError):
    """The path lies outside the server's allowed roots."""

    code = grpc.StatusCode.PERMISSION_DENIED


class UnauthenticatedError(ReelscanError):
    """The server wants a (different) bearer token."""

    code = grpc.StatusCode.UNAUTHENTICATED


class FailedPreconditionError(ReelscanError):
    """The target is in the wrong state (cancelling a finished job, scanning a file rather than a directory)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhaustedError(ReelscanError):
    """A server limit was reached (queued jobs, watchers, message size)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(ReelscanError):
    """The server cannot be reached (down, restarting, network); retried for idempotent calls before raising."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(ReelscanError):
    """The call's deadline passed before the server answered."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class CallCancelledError(ReelscanError):
    """The call itself was cancelled (not the job: a cancelled job is a job in state CANCELLED)."""

    code = grpc.StatusCode.CANCELLED


class InternalError(ReelscanError):
    """The server hit a bug (INTERNAL) or answered something this client cannot understand (UNKNOWN)."""

    code = grpc.StatusCode.INTERNAL


_CLASS_OF: dict[grpc.StatusCode, type[ReelscanError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        PermissionDeniedError,
        UnauthenticatedError,
        FailedPreconditionError,
        ResourceExhaustedError,
        UnavailableError,
        DeadlineExceededError,
        CallCancelledError,
        InternalError,
    )
}
_CLASS_OF[grpc.StatusCode.UNKNOWN] = InternalError


def decode_details(status: status_pb2.Status) -> list[protobuf_message.Message]:
    """Unpacks each Any of a google.rpc.Status into its message type when it is a known error detail."""
    decoded: list[protobuf_message.Message] = []
    for packed in status.details:
        cls = _DETAIL_TYPES.get(packed.TypeName())
        if cls is None:
            decoded.append(packed)
            continue
        detail = cls()
        if packed.Unpack(detail):
            decoded.append(detail)
        else:  # a corrupt payload: keep the raw Any rather than lose it
            decoded.append(packed)
    return decoded


def _rich_status(call: Any) -> status_pb2.Status | None:
    try:
        status: status_pb2.Status | None = rpc_status.from_call(call)
        return status
    except ValueError:
        # from_call insists that the packed status agrees with the call's code and message. A proxy that rewrote
        # one of them should not cost the caller the details, so decode the trailer directly.
        for key, value in call.trailing_metadata() or ():
            if key == _STATUS_DETAILS_KEY:
                try:
                    return status_pb2.Status.FromString(value)
                except protobuf_message.DecodeError:
                    return None
        return None


def error_from_rpc(error: grpc.RpcError, method: str = "") -> ReelscanError:
    """Turns a failed call (sync or aio; both are grpc.Call as well as grpc.RpcError) into a ReelscanError."""
    code: grpc.StatusCode = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    text = error.details() if callable(getattr(error, "details", None)) else str(error)
    status = _rich_status(error) if callable(getattr(error, "trailing_metadata", None)) else None
    details = decode_details(status) if status is not None else []
    cls = _CLASS_OF.get(code, ReelscanError)
    return cls(text or "", code=code, details=details, method=method)


def pack_details(*details: protobuf_message.Message) -> list[any_pb2.Any]:
    """Packs messages into Anys (for building google.rpc.Status values, e.g. in tests and fakes)."""
    packed = []
    for detail in details:
        one = any_pb2.Any()
        one.Pack(detail)
        packed.append(one)
    return packed
