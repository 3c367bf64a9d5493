"""The one place where domain errors become gRPC statuses.

`ErrorMappingInterceptor` wraps every unary handler: a `DomicileError` becomes its gRPC code
with a `google.rpc.Status` in the `grpc-status-details-bin` trailer carrying
`google.rpc.ErrorInfo` (reason, metadata), `google.rpc.BadRequest` (field violations) and
`google.rpc.RetryInfo` (retry_after) as applicable. Any other exception is logged with an
incident id and answered INTERNAL without internals.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from domicile.errors import DomicileError, ErrorCode
from domicile.grpc_handlers import WrappingInterceptor

log = logging.getLogger(__name__)

ERROR_DOMAIN = "domicile.dev"

GRPC_CODES: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.ABORTED: grpc.StatusCode.ABORTED,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def status_for(error: DomicileError) -> grpc.Status:
    """The gRPC status (code, message, rich-details trailer) for a domain error, bounded
    (`DomicileError.bounded`) so that it fits the trailers a client accepts."""
    error = error.bounded()
    code = GRPC_CODES[error.code]
    details = []
    if error.reason:
        details.append(
            _pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata))
        )
    if error.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                        for v in error.violations
                    ]
                )
            )
        )
    if error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(error.retry_after * 1000))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=error.caller_text(), details=details)
    return rpc_status.to_status(status)


async def abort(context: grpc.aio.ServicerContext, error: DomicileError) -> None:
    """Abort the RPC with the status for `error` (raises, like `context.abort`)."""
    status = status_for(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def wrap_unary(inner: Handler) -> Handler:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await inner(request, context)
        except DomicileError as error:
            await abort(context, error)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception:
            incident = uuid.uuid4().hex[:12]
            log.exception("internal error (incident %s)", incident)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error (incident {incident})")

    return handle


class ErrorMappingInterceptor(WrappingInterceptor):
    """Maps DomicileError (and unexpected exceptions) raised by unary handlers to statuses."""

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.unary_unary is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            wrap_unary(handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class RequestParsingInterceptor(WrappingInterceptor):
    """Parses unary requests right before the servicer: bytes that are no request of the
    method's type are INVALID_ARGUMENT (reason MALFORMED_REQUEST), where gRPC itself would
    answer UNKNOWN naming the parser's exception. The innermost interceptor: the others pass
    the bytes through (and refuse an unauthenticated caller before anything is parsed)."""

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        parse, inner = handler.request_deserializer, handler.unary_unary
        name = method.rsplit("/", 1)[-1]

        async def parsed(data: bytes, context: grpc.aio.ServicerContext) -> Any:
            try:
                request = parse(data)
            except DecodeError as exc:
                raise DomicileError(
                    f"not a valid {name} request: {exc}", ErrorCode.INVALID_ARGUMENT, "MALFORMED_REQUEST"
                ) from None
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            parsed, request_deserializer=None, response_serializer=handler.response_serializer
        )


def details_of(error: grpc.aio.AioRpcError | grpc.RpcError) -> dict[str, Any]:
    """Client side: the rich details of a failed call as a dict (for tests), as the SDK decodes
    them (`domicile.client.errors.error_from_rpc`):
    {"reason", "metadata", "field_violations": [(field, description)], "retry_after"}."""
    from domicile.client.errors import error_from_rpc  # the client side, only for this helper

    typed = error_from_rpc(error)
    return {
        "reason": typed.reason,
        "metadata": dict(typed.metadata),
        "field_violations": [(v.field, v.description) for v in typed.field_violations],
        "retry_after": typed.retry_after,
    }
