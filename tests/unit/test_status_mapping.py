"""The one mapping from domain errors to gRPC status: each error's code, the
rich details a client reads (field violations, retry delay), the bounds that
keep a status within what clients accept in trailers, and the interceptor
that applies it to every handler. Without a server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from uba.api import errors as mapping
from uba.api.calls import CallRecord, current_call
from uba.api.decoding import Undecodable
from uba.domain import errors
from uba.domain.events import FieldViolation
from uba.domain.security import CallOrigin


def rich_status(status: grpc.Status) -> status_pb2.Status:
    """The google.rpc.Status a client decodes from the trailers."""
    (value,) = [v for k, v in status.trailing_metadata if k == "grpc-status-details-bin"]
    return status_pb2.Status.FromString(value)


def bad_request(status: grpc.Status) -> error_details_pb2.BadRequest:
    (detail,) = rich_status(status).details
    found = error_details_pb2.BadRequest()
    assert detail.Unpack(found)
    return found


@pytest.mark.parametrize(
    "error, code",
    [
        (errors.InvalidArgument.single("f", "bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFound("no such alert"), grpc.StatusCode.NOT_FOUND),
        (errors.FailedPrecondition("resolved"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.PermissionDenied("lacks read"), grpc.StatusCode.PERMISSION_DENIED),
        (errors.Unauthenticated("missing key"), grpc.StatusCode.UNAUTHENTICATED),
        (errors.ResourceExhausted("slow down", 2.0), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.Unavailable("database down"), grpc.StatusCode.UNAVAILABLE),
        (errors.Unimplemented("no incidents"), grpc.StatusCode.UNIMPLEMENTED),
        (errors.DomainError("a kind nobody mapped"), grpc.StatusCode.UNKNOWN),
    ],
)
def test_each_domain_error_has_its_code_and_keeps_its_message(error, code):
    status = mapping.to_status(error)
    assert status.code == code
    assert status.details == str(error)
    assert rich_status(status).code == code.value[0]


def test_field_violations_travel_as_bad_request():
    error = errors.InvalidArgument(
        [FieldViolation("events[0].user_id", "required"), FieldViolation("type", "unknown")]
    )
    violations = bad_request(mapping.to_status(error)).field_violations
    assert [(v.field, v.description) for v in violations] == [
        ("events[0].user_id", "required"),
        ("type", "unknown"),
    ]


def test_invalid_argument_without_violations_has_no_details():
    status = mapping.to_status(errors.InvalidArgument([], "not a valid message"))
    assert status.details == "not a valid message"
    assert not rich_status(status).details


def test_resource_exhausted_carries_the_retry_delay():
    status = mapping.to_status(errors.ResourceExhausted("rate limit", retry_after=1.25))
    (detail,) = rich_status(status).details
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info)
    assert info.retry_delay.ToMilliseconds() == 1250


def test_unavailable_carries_a_retry_delay_only_when_it_has_one():
    status = mapping.to_status(errors.Unavailable("no stream leader", retry_after=1.0))
    assert status.code == grpc.StatusCode.UNAVAILABLE
    (detail,) = rich_status(status).details
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info)
    assert info.retry_delay.ToMilliseconds() == 1000
    assert not rich_status(mapping.to_status(errors.Unavailable("database down"))).details


def test_many_violations_are_cut_to_the_limit_with_a_count_of_the_rest():
    error = errors.InvalidArgument(
        [FieldViolation(f"events[{i}].user_id", "required") for i in range(25)]
    )
    violations = bad_request(mapping.to_status(error)).field_violations
    assert len(violations) == mapping.MAX_VIOLATIONS + 1
    assert violations[mapping.MAX_VIOLATIONS - 1].field == "events[9].user_id"
    last = violations[-1]
    assert last.field == ""
    assert last.description == "15 more violations not listed"


def test_long_texts_are_clipped_to_their_byte_limits():
    error = errors.InvalidArgument([FieldViolation("f" * 1000, "d" * 1000)], message="m" * 10_000)
    status = mapping.to_status(error)
    (violation,) = bad_request(status).field_violations
    assert len(violation.field.encode()) == mapping.MAX_FIELD_BYTES
    assert violation.field.endswith("...")
    assert len(violation.description.encode()) == mapping.MAX_DESCRIPTION_BYTES
    assert len(status.details.encode()) == mapping.MAX_MESSAGE_BYTES
    assert status.details.startswith("mmm") and status.details.endswith("...")


def test_clipping_never_splits_a_character():
    status = mapping.to_status(errors.NotFound("é" * 1000))
    assert len(status.details.encode()) <= mapping.MAX_MESSAGE_BYTES
    assert status.details == "é" * len(status.details[:-3]) + "..."


def test_texts_within_the_limits_are_kept_whole():
    text = "x" * mapping.MAX_MESSAGE_BYTES
    assert mapping.to_status(errors.NotFound(text)).details == text


# -- the interceptor ------------------------------------------------------------


class Aborted(Exception):
    pass


class FakeContext:
    """Records the status a handler aborts with (grpc raises, so do we)."""

    def __init__(self) -> None:
        self.status: grpc.Status | None = None

    async def abort_with_status(self, status: grpc.Status) -> None:
        self.status = status
        raise Aborted


@dataclass
class CallDetails:
    method: str
    invocation_metadata: tuple = ()


def intercepted_unary(behavior, method: str = "/uba.v1.BehaviorAnalyticsService/ListLogs"):
    async def continuation(_details):
        return grpc.unary_unary_rpc_method_handler(behavior)

    handler = asyncio.run(
        mapping.ErrorInterceptor().intercept_service(continuation, CallDetails(method))
    )
    return handler.unary_unary


def call(handler, request) -> tuple[object, FakeContext]:
    context = FakeContext()

    async def run():
        try:
            return await handler(request, context)
        except Aborted:
            return None

    return asyncio.run(run()), context


def test_a_handler_that_returns_is_left_alone():
    async def behavior(request, context):
        return "reply"

    result, context = call(intercepted_unary(behavior), "request")
    assert result == "reply" and context.status is None


def test_a_domain_error_aborts_with_its_status_and_notes_it_for_the_audit():
    async def behavior(request, context):
        raise errors.NotFound("no alert a1")

    record = CallRecord("AcknowledgeAlert", CallOrigin("ipv4:127.0.0.1:1", "127.0.0.1"))
    handler = intercepted_unary(behavior)

    async def run():
        current_call.set(record)
        context = FakeContext()
        with pytest.raises(Aborted):
            await handler("request", context)
        return context

    context = asyncio.run(run())
    assert context.status is not None
    assert context.status.code == grpc.StatusCode.NOT_FOUND
    assert context.status.details == "no alert a1"
    assert record.outcome == "NOT_FOUND"


def test_an_unexpected_error_is_internal_with_a_trace_id_and_no_internals():
    async def behavior(request, context):
        raise KeyError("secret internals")

    _, context = call(intercepted_unary(behavior), "request")
    assert context.status is not None
    assert context.status.code == grpc.StatusCode.INTERNAL
    assert context.status.details.startswith("internal error; trace id ")
    assert "secret" not in context.status.details


def test_an_undecodable_request_is_refused_before_the_handler_runs():
    ran = []

    async def behavior(request, context):
        ran.append(request)

    request = Undecodable(errors.InvalidArgument.single("user_id", "not valid UTF-8"))
    _, context = call(intercepted_unary(behavior), request)
    assert ran == []
    assert context.status is not None
    assert context.status.code == grpc.StatusCode.INVALID_ARGUMENT
    (violation,) = bad_request(context.status).field_violations
    assert (violation.field, violation.description) == ("user_id", "not valid UTF-8")
