"""Maps domain errors to gRPC statuses with google.rpc.Status details, for every RPC, in one place.

Servicers raise reelscan.service.errors.ReelscanError subclasses; `add_servicer` wraps every handler so that they
become the status code their class names (service/errors.py) with an ErrorInfo (and a BadRequest field violation
when the error names a field). Anything else becomes INTERNAL with a generic message and a logged traceback, and a
request that does not parse becomes INVALID_ARGUMENT, so no handler ever surfaces as UNKNOWN.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from reelscan.service import errors

log = logging.getLogger(__name__)

ERROR_DOMAIN = "reelscan.v1"
# Messages may quote client input (paths, extensions). They travel in the trailers twice or three times
# (grpc-message, percent-encoded: up to 3 bytes per byte; and base64 in the packed google.rpc.Status, with the
# BadRequest description), and clients refuse trailers over 8-16 KiB by default, so a long one is cut here, by bytes.
MAX_MESSAGE_BYTES = 600

# The code of a domain error is the one its class names (service/errors.py, the one table from error to code, which
# job outcomes use too); here it only becomes the grpc.StatusCode of the same number.
_STATUS_CODES: dict[int, grpc.StatusCode] = {int(code.value[0]): code for code in grpc.StatusCode}


def status_code_of(error: BaseException) -> grpc.StatusCode:
    """The status an RPC that raised `error` ends with: a domain error's code, INTERNAL for anything else."""
    return _STATUS_CODES[errors.code_of(error)]


def _clip(text: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """`text` cut to at most `limit` UTF-8 bytes (on a character boundary), marked with an ellipsis if cut."""
    encoded = text.encode("utf-8", "surrogateescape")
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 3].decode("utf-8", "ignore") + "…"


def to_rich_status(error: errors.ReelscanError) -> status_pb2.Status:
    code = status_code_of(error)
    message = _clip(error.message)
    details = []
    info = error_details_pb2.ErrorInfo(reason=code.name, domain=ERROR_DOMAIN)
    if error.field:
        info.metadata["field"] = error.field
    packed = any_pb2.Any()
    packed.Pack(info)
    details.append(packed)
    if error.field and code is grpc.StatusCode.INVALID_ARGUMENT:
        bad = error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field=error.field, description=message)]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        details.append(packed)
    return status_pb2.Status(code=int(code.value[0]), message=message, details=details)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: BaseException, method: str) -> None:
    if isinstance(error, errors.ReelscanError):
        await context.abort_with_status(rpc_status.to_status(to_rich_status(error)))
    log.exception("unexpected error in %s", method, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}: {type(error).__name__}")


class _MalformedRequest:
    """Stands in for a request whose bytes did not parse. grpc answers UNKNOWN when a deserializer raises, so the
    wrapped deserializer returns this instead and the wrapped handler answers INVALID_ARGUMENT."""

    def __init__(self, error: Exception) -> None:
        self.reason = f"the request message could not be parsed: {_clip(str(error), 200)}"


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as error:  # DecodeError, or invalid UTF-8 in a string field
            return _MalformedRequest(error)

    return deserialize


def _wrap_unary(behavior: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, _MalformedRequest):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        try:
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _abort(context, error, method)

    return wrapped


def _wrap_stream(behavior: Callable[..., AsyncIterator[Any]], method: str) -> Callable[..., AsyncIterator[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        if isinstance(request, _MalformedRequest):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        try:
            async for item in behavior(request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _abort(context, error, method)

    return wrapped


def wrap_handler(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """Returns `handler` with malformed requests answered INVALID_ARGUMENT and errors mapped to rich statuses."""
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary(handler.unary_unary, method),
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream(handler.unary_stream, method),
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    return handler


# Wraps a (mapped) method handler once more, given its full method name: see api/observe.py.
HandlerHook = Callable[[grpc.RpcMethodHandler, str], grpc.RpcMethodHandler]


class _ErrorMappingRegistrar:
    """Stands in for the server in a generated add_*Servicer_to_server function: wraps each method handler once,
    at registration, then registers it on the real server. (A server interceptor would do the same work on every
    call: measured at ~40% of GetJob's server CPU, see bench/README.md.)"""

    def __init__(self, server: grpc.aio.Server, instrument: HandlerHook | None = None) -> None:
        self._server = server
        self._instrument = instrument

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # superseded: add_registered_method_handlers below registers the same methods, wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        mapped = wrap_handler(handler, method)
        # The hook (api/observe.py: metrics, refused-request log) goes outside: it sees the status clients get.
        return mapped if self._instrument is None else self._instrument(mapped, method)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        wrapped = {name: self._wrap(handler, f"/{service}/{name}") for name, handler in handlers.items()}
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, wrapped),))
        self._server.add_registered_method_handlers(service, wrapped)


def add_servicer(
    add_to_server: Callable[[Any, Any], None],
    servicer: Any,
    server: grpc.aio.Server,
    instrument: HandlerHook | None = None,
) -> None:
    """Registers `servicer` like `add_to_server(servicer, server)` (a generated add_*Servicer_to_server function)
    would, with every method wrapped by `wrap_handler`, and then by `instrument(handler, method)` if given."""
    add_to_server(servicer, _ErrorMappingRegistrar(server, instrument))
