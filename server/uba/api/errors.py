"""The one place that maps domain errors to gRPC status codes.

An interceptor wraps every handler, unary and streaming. Domain errors become
their status with rich details (google.rpc.BadRequest for field violations,
google.rpc.RetryInfo for limits); anything unexpected becomes INTERNAL with a
generic message and a trace id that is logged with the stack trace.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from uba.api.calls import note_status
from uba.domain import errors

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
    if isinstance(exc, errors.ResourceExhausted):
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(exc.retry_after * 1000))
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        status.details.append(detail)
    return rpc_status.to_status(status)


def _internal(method: str, exc: BaseException) -> grpc.Status:
    trace_id = uuid.uuid4().hex[:16]
    log.error("unexpected error in %s (trace id %s)", method, trace_id, exc_info=exc)
    return rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INTERNAL, message=f"internal error; trace id {trace_id}")
    )


# -- requests that do not parse --------------------------------------------
# gRPC parses a request before any handler runs and answers a parse failure
# (a string field that is not UTF-8, which the gateway passes on from a
# query string like ?user_id=%FF) with UNKNOWN, which the gateway turns into
# 500. Instead, the request becomes an Undecodable that the handler wrappers
# below refuse with INVALID_ARGUMENT naming the field, after the auth
# interceptor (outside them) has checked the caller.
#
# Text with a NUL character is refused the same way, except by the ingest
# methods (their validation refuses control characters per event, so a batch
# keeps its per-item answers): no stored text can hold one (PostgreSQL text
# cannot), so a filter or id with one could only fail in the database driver.

# Methods whose requests may carry NUL characters to their own validation.
_VALIDATES_TEXT_ITSELF = frozenset({"RecordActivity", "RecordActivities"})


class Undecodable:
    """What a request that is not a valid message deserialises to."""

    __slots__ = ("error",)

    def __init__(self, error: errors.InvalidArgument):
        self.error = error


def _tolerant(
    method: str, deserializer: Callable[[bytes], object] | None
) -> Callable[[bytes], object] | None:
    if deserializer is None:
        return None
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    check_nul = method.rsplit("/", 1)[-1] not in _VALIDATES_TEXT_ITSELF

    def deserialize(raw: bytes):
        try:
            message = deserializer(raw)
        except DecodeError:
            return Undecodable(_decode_error(descriptor, raw))
        # The byte test is a cheap filter: zero bytes also occur in numbers.
        if check_nul and b"\x00" in raw and (field := _nul_field(message)):
            return Undecodable(
                errors.InvalidArgument.single(field, "must not contain NUL characters")
            )
        return message

    return deserialize


def _nul_field(message, prefix: str = "") -> str | None:
    """The path of the first text of `message` holding a NUL character."""
    for field, value in message.ListFields():
        name = prefix + field.name
        if field.type == field.TYPE_STRING:
            values = value if field.is_repeated else [value]
            for i, text in enumerate(values):
                if "\x00" in text:
                    return f"{name}[{i}]" if field.is_repeated else name
        elif field.type == field.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    if "\x00" in str(key) or (isinstance(item, str) and "\x00" in item):
                        return f"{name}[{str(key)[:64]!r}]"
                continue
            items = value if field.is_repeated else [value]
            for i, item in enumerate(items):
                found = _nul_field(item, f"{name}[{i}]." if field.is_repeated else f"{name}.")
                if found:
                    return found
    return None


def _decode_error(descriptor, raw: bytes) -> errors.InvalidArgument:
    field = _bad_utf8_field(descriptor, raw) if descriptor is not None else None
    if field:
        return errors.InvalidArgument.single(field, "not valid UTF-8")
    name = descriptor.full_name if descriptor is not None else "request"
    return errors.InvalidArgument([], f"the request is not a valid {name} message")


class _Corrupt(Exception):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while shift < 64:
        if pos >= len(data):
            raise _Corrupt
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise _Corrupt


def _bad_utf8_field(descriptor, data: bytes, prefix: str = "", depth: int = 0) -> str | None:
    """The path (e.g. "events[2].user_id") of the first string field of
    `data`, the wire form of a `descriptor` message, that is not UTF-8."""
    if depth > 16:
        return None
    seen: dict[int, int] = {}
    pos = 0
    try:
        while pos < len(data):
            key, pos = _varint(data, pos)
            number, wire_type = key >> 3, key & 7
            if wire_type == 0:
                _, pos = _varint(data, pos)
            elif wire_type in (1, 5):
                pos += 8 if wire_type == 1 else 4
            elif wire_type == 2:
                length, pos = _varint(data, pos)
                if pos + length > len(data):
                    raise _Corrupt
                value, pos = data[pos : pos + length], pos + length
                field = descriptor.fields_by_number.get(number)
                if field is None:
                    continue
                name = prefix + field.name
                if field.is_repeated and not (
                    field.message_type and field.message_type.GetOptions().map_entry
                ):
                    seen[number] = seen.get(number, -1) + 1
                    name += f"[{seen[number]}]"
                if field.type == field.TYPE_STRING:
                    try:
                        value.decode("utf-8")
                    except UnicodeDecodeError:
                        return name
                elif field.type == field.TYPE_MESSAGE:
                    found = _bad_utf8_field(field.message_type, value, name + ".", depth + 1)
                    if found:
                        return found
            else:
                return None
    except _Corrupt:
        return None
    return None


def _noted(status: grpc.Status) -> grpc.Status:
    """`status`, noted as the current call's outcome (for its audit entry)."""
    note_status(status.code.name)
    return status


def _wrap_unary(method: str, behavior: Callable[..., Awaitable]) -> Callable[..., Awaitable]:
    async def handler(request, context: grpc.aio.ServicerContext):
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


def _wrap_stream(
    method: str, behavior: Callable[..., AsyncIterator]
) -> Callable[..., AsyncIterator]:
    async def handler(request, context: grpc.aio.ServicerContext):
        try:
            if isinstance(request, Undecodable):
                raise request.error
            async for message in behavior(request, context):
                yield message
        except errors.DomainError as exc:
            await context.abort_with_status(_noted(to_status(exc)))
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:  # noqa: BLE001
            await context.abort_with_status(_noted(_internal(method, exc)))

    return handler


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return handler._replace(
                unary_unary=_wrap_unary(method, handler.unary_unary),
                request_deserializer=_tolerant(method, handler.request_deserializer),
            )
        if handler.unary_stream is not None:
            return handler._replace(
                unary_stream=_wrap_stream(method, handler.unary_stream),
                request_deserializer=_tolerant(method, handler.request_deserializer),
            )
        return handler


class DrainInterceptor(grpc.aio.ServerInterceptor):
    """During shutdown, refuses new calls with UNAVAILABLE (which clients
    retry) while in-flight ones finish. Health checks still answer, so load
    balancers can see NOT_SERVING."""

    def __init__(self) -> None:
        self.draining = False

    async def intercept_service(self, continuation, handler_call_details):
        if self.draining and not handler_call_details.method.startswith("/grpc.health."):
            return _refuse_handler()
        return await continuation(handler_call_details)


def _refuse_handler() -> grpc.RpcMethodHandler:
    async def refuse(request, context):
        await context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down; retry")

    # Requests of any method are accepted as raw bytes: nothing to parse.
    return grpc.unary_unary_rpc_method_handler(refuse)
