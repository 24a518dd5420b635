"""Optional bearer-token authentication for every RPC except health checks.

The token is read once at start-up from --auth-token-file. Comparison is constant-time. Health stays open so
load balancers and orchestrators can probe the server without credentials.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

HEALTH_PREFIX = "/grpc.health.v1.Health/"
# Told of each refused call (method, peer, reason), for the log and metrics (api/observe.py).
OnDenied = Callable[[str, str, str], None]


def _no_one(method: str, peer: str, reason: str) -> None:
    return None


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls whose `authorization` metadata is not `Bearer <token>` with UNAUTHENTICATED."""

    def __init__(self, token: str, on_denied: OnDenied = _no_one) -> None:
        if not token:
            raise ValueError("the auth token must not be empty")
        self._expected = f"Bearer {token}".encode()
        self._on_denied = on_denied

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        if method.startswith(HEALTH_PREFIX):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        presented = metadata.get("authorization")
        if presented is None:
            reason = "missing authorization metadata: send 'authorization: Bearer <token>'"
        elif hmac.compare_digest(str(presented).encode(), self._expected):
            return await continuation(handler_call_details)
        else:
            reason = "invalid bearer token"
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        on_denied = self._on_denied

        async def refuse(context: grpc.aio.ServicerContext) -> None:
            on_denied(method, str(context.peer()), reason)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
            await refuse(context)

        # Keep the method's shape (unary or streaming) so the client sees a clean status, not a protocol error.
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(deny, handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream is not None:

            async def deny_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await refuse(context)
                yield  # pragma: no cover - makes this an async generator

            return grpc.unary_stream_rpc_method_handler(
                deny_stream, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary is not None:

            async def deny_stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> None:
                await refuse(context)

            return grpc.stream_unary_rpc_method_handler(
                deny_stream_unary, handler.request_deserializer, handler.response_serializer
            )

        async def deny_stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            await refuse(context)
            yield  # pragma: no cover

        return grpc.stream_stream_rpc_method_handler(
            deny_stream_stream, handler.request_deserializer, handler.response_serializer
        )


def load_token(path: str) -> str:
    """Reads the token file (sync: called once before the event loop serves anything)."""
    with open(path, encoding="utf-8") as f:
        token = f.read().strip()
    if not token:
        raise ValueError(f"--auth-token-file {path} is empty")
    return token
