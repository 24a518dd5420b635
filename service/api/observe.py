"""What happens to each RPC, for the operator: status code and latency per method (metrics), and one INFO line per
refused request with its status code (never a traceback: a client's mistake is not the server's error).

Wrapped around each method handler once, at registration (like the error mapping in status.py, and for the same
reason: a server interceptor costs a coroutine per call and was measured at ~40% of GetJob's server CPU). The
wrapper sits outside the error mapping, so it sees the status the client gets. Health checks are wrapped too,
without the error mapping (`add_observed`); reflection is left alone (a stream-stream service used by tools).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health

from reelscan.service.telemetry.events import NO_TELEMETRY, Telemetry

# Codes that mean "the client is the problem": the request is refused, logged at INFO. Not here: CANCELLED and
# DEADLINE_EXCEEDED (the client gave up), INTERNAL (logged with its traceback where it happens), UNAVAILABLE (this
# server is shutting down, and says so once: a line per open WatchJob stream would bury it). All are counted.
REFUSED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)
Context = Any  # grpc.aio.ServicerContext


class RpcObserver:
    """Reports each RPC's end to `telemetry` (rpc_handled; rpc_refused for REFUSED codes). With `timed`, unary
    calls are timed too (only when metrics are on: the clock costs a little on every call)."""

    def __init__(self, telemetry: Telemetry = NO_TELEMETRY, *, timed: bool = False) -> None:
        self._telemetry = telemetry
        self._timed = timed

    def instrument(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """`handler` (of the full method name "/pkg.Service/Method") with its outcome reported."""
        name = method.lstrip("/")
        unary, stream = handler.unary_unary, handler.unary_stream
        # Plain functions (run by grpc in a thread) are left as they are.
        if unary is not None and inspect.iscoroutinefunction(unary):
            return grpc.unary_unary_rpc_method_handler(
                self._unary(unary, name),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if stream is not None and (inspect.isasyncgenfunction(stream) or inspect.iscoroutinefunction(stream)):
            observed = self._stream(stream, name) if inspect.isasyncgenfunction(stream) else self._writer(stream, name)
            return grpc.unary_stream_rpc_method_handler(
                observed,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _ended(self, name: str, context: Context, code: grpc.StatusCode, seconds: float | None) -> None:
        self._telemetry.rpc_handled(name, code.name, seconds)
        if code in REFUSED:
            self._telemetry.rpc_refused(name, code.name, _peer(context), _details(context))

    def _aborted(self, name: str, context: Context, seconds: float | None) -> None:
        code = context.code()
        self._ended(name, context, code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN, seconds)

    def _unary(self, behavior: Callable[..., Awaitable[Any]], name: str) -> Callable[..., Awaitable[Any]]:
        telemetry = self._telemetry
        clock = time.perf_counter

        if self._timed:

            async def timed(request: Any, context: Context) -> Any:
                started = clock()
                try:
                    response = await behavior(request, context)
                except grpc.aio.AbortError:
                    self._aborted(name, context, clock() - started)
                    raise
                except asyncio.CancelledError:
                    telemetry.rpc_handled(name, "CANCELLED", clock() - started)
                    raise
                telemetry.rpc_handled(name, "OK", clock() - started)
                return response

            return timed

        async def untimed(request: Any, context: Context) -> Any:
            try:
                return await behavior(request, context)
            except grpc.aio.AbortError:
                self._aborted(name, context, None)
                raise

        return untimed

    def _stream(self, behavior: Callable[..., AsyncIterator[Any]], name: str) -> Callable[..., AsyncIterator[Any]]:
        telemetry = self._telemetry

        async def observed(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                async for item in behavior(request, context):
                    yield item
            except grpc.aio.AbortError:
                self._aborted(name, context, None)
                raise
            except asyncio.CancelledError:
                telemetry.rpc_handled(name, "CANCELLED", None)
                raise
            telemetry.rpc_handled(name, "OK", None)

        return observed

    def _writer(self, behavior: Callable[..., Awaitable[Any]], name: str) -> Callable[..., Awaitable[Any]]:
        """A server-streaming handler that writes with context.write (health's Watch) instead of yielding."""
        telemetry = self._telemetry

        async def observed(request: Any, context: Context) -> Any:
            try:
                result = await behavior(request, context)
            except grpc.aio.AbortError:
                self._aborted(name, context, None)
                raise
            except asyncio.CancelledError:
                telemetry.rpc_handled(name, "CANCELLED", None)
                raise
            telemetry.rpc_handled(name, "OK", None)
            return result

        return observed

    def denied(self, method: str, peer: str, reason: str) -> None:
        """The bearer-token check refused a call (it never reaches a handler)."""
        name = method.lstrip("/")
        self._telemetry.rpc_handled(name, grpc.StatusCode.UNAUTHENTICATED.name, None)
        self._telemetry.rpc_refused(name, grpc.StatusCode.UNAUTHENTICATED.name, peer, reason)


def _peer(context: Context) -> str:
    try:
        return str(context.peer())
    except Exception:  # the call may already be gone
        return ""


def _details(context: Context) -> str:
    try:
        details = context.details()
    except Exception:
        return ""
    if isinstance(details, bytes):
        return details.decode("utf-8", "replace")
    return "" if details is None else str(details)


class HealthServicer(health.aio.HealthServicer):
    """grpcio-health-checking's servicer, with Health/List answered UNIMPLEMENTED cleanly. (The package inherits
    the generated stub, which raises NotImplementedError: grpc then logs an ERROR with a traceback for every client
    that calls List.)"""

    async def List(self, request: Any, context: Context) -> Any:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "grpc.health.v1.Health/List is not implemented by this server; use Check or Watch",
        )


class _ObservingRegistrar:
    """Stands in for the server in a generated add_*Servicer_to_server function, instrumenting each method."""

    def __init__(self, server: grpc.aio.Server, observer: RpcObserver) -> None:
        self._server = server
        self._observer = observer

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # superseded: add_registered_method_handlers below registers the same methods, instrumented

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        wrapped = {name: self._observer.instrument(h, f"/{service}/{name}") for name, h in handlers.items()}
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, wrapped),))
        self._server.add_registered_method_handlers(service, wrapped)


def add_observed(
    add_to_server: Callable[[Any, Any], None], servicer: Any, server: grpc.aio.Server, observer: RpcObserver
) -> None:
    """Registers a servicer that maps its own errors (health) with only the observation wrapped around it."""
    add_to_server(servicer, _ObservingRegistrar(server, observer))
