"""Python client and command-line interface for reelscan.

    from reelscan.client import ReelscanClient

    with ReelscanClient("127.0.0.1:50051") as client:
        job = client.scan_and_wait("/srv/media", on_update=lambda u: print(f"{u.progress:.0%}"))

`AsyncReelscanClient` has the same methods for asyncio code. Messages are the generated reelscan.v1 types.
"""

from reelscan.client.async_client import AsyncReelscanClient
from reelscan.client.connection import DEFAULT_ADDRESS, DEFAULT_TIMEOUT_S, TlsOptions
from reelscan.client.errors import (
    CallCancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ReelscanError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from reelscan.client.rpc import ReconnectPolicy, RetryPolicy, is_terminal
from reelscan.client.sync_client import ReelscanClient

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_TIMEOUT_S",
    "AsyncReelscanClient",
    "CallCancelledError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ReconnectPolicy",
    "ReelscanClient",
    "ReelscanError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "TlsOptions",
    "UnauthenticatedError",
    "UnavailableError",
    "is_terminal",
]
