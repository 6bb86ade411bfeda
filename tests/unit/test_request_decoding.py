"""Requests that do not parse, or carry text with a NUL character, become an
Undecodable whose InvalidArgument names the offending field, so that a caller
(and the REST gateway) gets INVALID_ARGUMENT with a field path instead of
UNKNOWN. Exercised here on the generated messages, without a server."""

from __future__ import annotations

import pytest

from uba.api.decoding import Undecodable, tolerant_deserializer
from uba.domain.errors import InvalidArgument
from uba.v1 import events_pb2, service_pb2

SERVICE = "/uba.v1.BehaviorAnalyticsService/"
BAD_UTF8 = b"ok\xff\xfe"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_delimited(message_type, name: str, payload: bytes) -> bytes:
    """The wire form of one length-delimited field (string or message)."""
    number = message_type.DESCRIPTOR.fields_by_name[name].number
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def decode(method: str, message_type, raw: bytes):
    deserialize = tolerant_deserializer(SERVICE + method, message_type.FromString)
    assert deserialize is not None
    return deserialize(raw)


def refusal(result: object) -> InvalidArgument:
    assert isinstance(result, Undecodable), result
    return result.error


def only_violation(error: InvalidArgument) -> tuple[str, str]:
    assert len(error.violations) == 1, error.violations
    return error.violations[0].field, error.violations[0].description


# -- messages that parse ----------------------------------------------------


def test_a_valid_request_comes_through_as_its_message():
    sent = service_pb2.ListLogsRequest(user_id="alice", page_size=5, page_token="t")
    assert decode("ListLogs", service_pb2.ListLogsRequest, sent.SerializeToString()) == sent


def test_zero_bytes_in_numbers_are_not_taken_for_nul_text():
    event = events_pb2.ActivityEvent(user_id="alice", latitude=1.0, status_code=256)
    sent = service_pb2.RecordActivityRequest(event=event)
    raw = sent.SerializeToString()
    assert b"\x00" in raw
    assert decode("GetUserBaseline", service_pb2.RecordActivityRequest, raw) == sent


def test_a_method_without_request_deserializer_keeps_none():
    assert tolerant_deserializer(SERVICE + "ListLogs", None) is None


# -- bytes that do not parse ------------------------------------------------


def test_invalid_utf8_in_a_top_level_string_names_the_field():
    raw = length_delimited(service_pb2.ListLogsRequest, "user_id", BAD_UTF8)
    error = refusal(decode("ListLogs", service_pb2.ListLogsRequest, raw))
    assert only_violation(error) == ("user_id", "not valid UTF-8")


def test_invalid_utf8_after_valid_fields_names_the_bad_one():
    raw = service_pb2.ListLogsRequest(user_id="alice", page_size=3).SerializeToString()
    raw += length_delimited(service_pb2.ListLogsRequest, "source_ip", BAD_UTF8)
    error = refusal(decode("ListLogs", service_pb2.ListLogsRequest, raw))
    assert only_violation(error) == ("source_ip", "not valid UTF-8")


def test_invalid_utf8_in_a_nested_repeated_field_names_its_path():
    good = events_pb2.ActivityEvent(user_id="fine").SerializeToString()
    bad = length_delimited(events_pb2.ActivityEvent, "user_id", BAD_UTF8)
    raw = b"".join(
        length_delimited(service_pb2.RecordActivitiesRequest, "events", event)
        for event in (good, good, bad)
    )
    # The ingest methods tolerate NUL characters, never broken UTF-8.
    error = refusal(decode("RecordActivities", service_pb2.RecordActivitiesRequest, raw))
    assert only_violation(error) == ("events[2].user_id", "not valid UTF-8")


def test_invalid_utf8_in_a_singular_nested_message_names_its_path():
    event = length_delimited(events_pb2.ActivityEvent, "device_id", BAD_UTF8)
    raw = length_delimited(service_pb2.RecordActivityRequest, "event", event)
    error = refusal(decode("RecordActivity", service_pb2.RecordActivityRequest, raw))
    assert only_violation(error) == ("event.device_id", "not valid UTF-8")


@pytest.mark.parametrize(
    "raw",
    [
        b"\x0a\x05ab",  # a string field whose length runs past the end
        b"\x0a",  # a key with no value
        b"\xff" * 11,  # a varint longer than ten bytes
    ],
)
def test_bytes_that_are_not_a_message_are_refused_without_a_field(raw):
    error = refusal(decode("ListLogs", service_pb2.ListLogsRequest, raw))
    assert error.violations == ()
    assert str(error) == "the request is not a valid uba.v1.ListLogsRequest message"


# -- text with a NUL character -------------------------------------------------


def test_a_nul_character_in_a_filter_names_the_field():
    raw = service_pb2.ListLogsRequest(user_id="a\x00b").SerializeToString()
    error = refusal(decode("ListLogs", service_pb2.ListLogsRequest, raw))
    assert only_violation(error) == ("user_id", "must not contain NUL characters")


def test_a_nul_character_in_nested_text_names_its_path():
    request = service_pb2.RecordActivitiesRequest()
    request.events.add(user_id="fine")
    request.events.add(user_id="fine", session_id="s\x00")
    # Decoded for a method that is not ingest: the NUL check applies.
    raw = request.SerializeToString()
    error = refusal(decode("ListLogs", service_pb2.RecordActivitiesRequest, raw))
    assert only_violation(error) == ("events[1].session_id", "must not contain NUL characters")


def test_a_nul_character_in_a_map_names_the_key():
    request = service_pb2.RecordActivityRequest()
    request.event.attributes["tenant"] = "a\x00"
    raw = request.SerializeToString()
    error = refusal(decode("ListLogs", service_pb2.RecordActivityRequest, raw))
    assert only_violation(error)[0] == "event.attributes['tenant']"


def test_a_nul_character_in_repeated_text_names_the_index():
    reply = service_pb2.TrainModelResponse(features=["a", "b\x00"])
    error = refusal(decode("ListLogs", service_pb2.TrainModelResponse, reply.SerializeToString()))
    assert only_violation(error)[0] == "features[1]"


@pytest.mark.parametrize("method", ["RecordActivity", "RecordActivities"])
def test_ingest_requests_keep_nul_characters_for_their_own_validation(method):
    message_type = getattr(service_pb2, f"{method}Request")
    event = events_pb2.ActivityEvent(user_id="a\x00b")
    sent = message_type(event=event) if method == "RecordActivity" else message_type(events=[event])
    assert decode(method, message_type, sent.SerializeToString()) == sent
