"""The one place that maps domain errors to gRPC status codes.

An interceptor wraps every handler, unary and streaming. Domain errors become
their status with rich details (google.rpc.BadRequest for field violations,
google.rpc.RetryInfo for limits, and for outages that say when to retry);
anything unexpected becomes INTERNAL with a generic message and a trace id
that is logged with the stack trace.

The interceptor also installs the tolerant request decoding of
uba.api.decoding, whose Undecodable requests it refuses here.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from uba.api.calls import note_status
from uba.api.decoding import Undecodable, tolerant_deserializer
from uba.domain import errors
from uba.observability.tracing import trace_id as active_trace_id

log = logging.getLogger(__name__)

_CODES: list[tuple[type[errors.DomainError], int]] = [
    (errors.InvalidArgument, code_pb2.INVALID_ARGUMENT),
    (errors.NotFound, code_pb2.NOT_FOUND),
    (errors.FailedPrecondition, code_pb2.FAILED_PRECONDITION),
    (errors.PermissionDenied, code_pb2.PERMISSION_DENIED),
    (errors.Unauthenticated, code_pb2.UNAUTHENTICATED),
    (errors.ResourceExhausted, code_pb2.RESOURCE_EXHAUSTED),
    (errors.Unavailable, code_pb2.UNAVAILABLE),
    (errors.Unimplemented, code_pb2.UNIMPLEMENTED),
]


# The status travels in trailers, which clients refuse beyond 8-16 KiB
# (then a caller would see RESOURCE_EXHAUSTED instead of the real error):
# bound what a request can make us echo back.
MAX_VIOLATIONS = 10
MAX_FIELD_BYTES = 96
MAX_DESCRIPTION_BYTES = 160
MAX_MESSAGE_BYTES = 400


def _clip(text: str, limit: int) -> str:
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "..."


def to_status(exc: errors.DomainError) -> grpc.Status:
    """The gRPC status (with details) that reports a domain error."""
    code = next((c for kind, c in _CODES if isinstance(exc, kind)), code_pb2.UNKNOWN)
    status = status_pb2.Status(code=code, message=_clip(str(exc), MAX_MESSAGE_BYTES))
    if isinstance(exc, errors.InvalidArgument) and exc.violations:
        shown = exc.violations[:MAX_VIOLATIONS]
        violations = [
            error_details_pb2.BadRequest.FieldViolation(
                field=_clip(v.field, MAX_FIELD_BYTES),
                description=_clip(v.description, MAX_DESCRIPTION_BYTES),
            )
            for v in shown
        ]
        if len(exc.violations) > len(shown):
            violations.append(
                error_details_pb2.BadRequest.FieldViolation(
                    field="",
                    description=f"{len(exc.violations) - len(shown)} more violations not listed",
                )
            )
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.BadRequest(field_violations=violations))
        status.details.append(detail)
    retry_after = getattr(exc, "retry_after", None)  # ResourceExhausted, some Unavailable
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(retry_after * 1000))
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        status.details.append(detail)
    return rpc_status.to_status(status)


def _internal(method: str, exc: BaseException) -> grpc.Status:
    # The call's trace, when traced: the message leads to it.
    trace_id = active_trace_id() or uuid.uuid4().hex[:16]
    log.error("unexpected error in %s (trace id %s)", method, trace_id, exc_info=exc)
    return rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INTERNAL, message=f"internal error; trace id {trace_id}")
    )


def _noted(status: grpc.Status) -> grpc.Status:
    """`status`, noted as the current call's outcome (for its audit entry)."""
    note_status(status.code.name)
    return status


UnaryBehavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
StreamBehavior = Callable[[Any, grpc.aio.ServicerContext], AsyncGenerator[Any, None]]


def _wrap_unary(method: str, behavior: UnaryBehavior) -> UnaryBehavior:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            if isinstance(request, Undecodable):
                raise request.error
            return await behavior(request, context)
        except errors.DomainError as exc:
            await context.abort_with_status(_noted(to_status(exc)))
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:  # noqa: BLE001 - the catch-all is this module's job
            await context.abort_with_status(_noted(_internal(method, exc)))

    return handler


def _wrap_stream(method: str, behavior: StreamBehavior) -> StreamBehavior:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncGenerator[Any, None]:
        try:
            if isinstance(request, Undecodable):
                raise request.error
            async for message in behavior(request, context):
                yield message
        except errors.DomainError as exc:
            await context.abort_with_status(_noted(to_status(exc)))
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:  # noqa: BLE001 - the catch-all is this module's job
            await context.abort_with_status(_noted(_internal(method, exc)))

    return handler


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps what unary and server-streaming handlers raise to a status."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return handler._replace(
                unary_unary=_wrap_unary(method, handler.unary_unary),
                request_deserializer=tolerant_deserializer(method, handler.request_deserializer),
            )
        if handler.unary_stream is not None:
            return handler._replace(
                unary_stream=_wrap_stream(method, handler.unary_stream),
                request_deserializer=tolerant_deserializer(method, handler.request_deserializer),
            )
        return handler
