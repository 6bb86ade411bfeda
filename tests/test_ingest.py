"""Recording events over a real gRPC channel: acknowledged means stored,
retried means stored once, invalid means refused with the field named."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from support.events import API_CALL, FAILURE, LOGIN, LOGOUT, event, unique

from uba.v1 import events_pb2, service_pb2

# Its subject depends on the analytics mode: both passes of make test run it.
pytestmark = pytest.mark.both_modes

UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def stored(stub, user_id: str) -> list[events_pb2.ActivityEvent]:
    events, token = [], ""
    while True:
        page = stub.ListLogs(
            service_pb2.ListLogsRequest(user_id=user_id, page_size=1000, page_token=token)
        )
        events.extend(page.events)
        token = page.next_page_token
        if not token:
            return events


def violations(err: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)
    assert status is not None, "error carries no google.rpc.Status"
    found = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


def test_recorded_event_is_listed_with_every_field(stub):
    user = unique()
    sent = event(
        user,
        LOGOUT,
        event_id=unique("e"),
        source_ip="2001:db8::7",
        user_agent="Mozilla/5.0",
        device_id="laptop-1",
        session_id="s-1",
        country_code="DE",
        city="Berlin",
        latitude=52.52,
        longitude=13.405,
        timezone="Europe/Berlin",
        peer_group="finance",
        api_method="GET",
        api_path="/v1/x",
        status_code=200,
        bytes_transferred=12345,
        source="sso",
        attributes={"mfa": "totp", "ticket": "T-1"},
    )
    sent.session_duration.FromTimedelta(timedelta(minutes=42, microseconds=5))
    reply = stub.RecordActivity(service_pb2.RecordActivityRequest(event=sent))
    assert reply.event_id == sent.event_id and not reply.duplicate
    (got,) = stored(stub, user)
    expected = events_pb2.ActivityEvent()
    expected.CopyFrom(sent)
    expected.received_at.CopyFrom(reply.received_at)
    assert got == expected


def test_text_with_separators_and_escapes_is_stored_exactly(stub):
    """PostgreSQL's COPY format gives tabs and backslashes a meaning: values
    holding them (TAB only in free text; identifiers refuse it), beside
    plain events and empty optional fields in one batch, must come back as
    sent."""
    user = unique("CORP\\")
    awkward = {
        "user_agent": "tab\there \\r\\nnew line\\N",
        "api_path": "/v1/a\\b\\\\c\\t",
        "city": "Zürich \\",
        "source": "\\N",
        "attributes": {"note": "line1\u2028line2\t\\", "path": "C:\\Temp", "empty": ""},
    }
    sent = [
        event(
            user,
            API_CALL,
            event_id=unique("plain"),
            api_path="/v1/plain",
            latitude=-0.1,
            longitude=1e-7,
        ),
        event(user, API_CALL, event_id=unique("awkward"), **awkward),
        event(user, LOGOUT, event_id=unique("bare")),
        event(user, API_CALL, event_id=unique("tab"), device_id="d\\t1", bytes_transferred=2**62),
    ]
    reply = stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=sent))
    assert reply.accepted_count == len(sent), reply
    got = {e.event_id: e for e in stored(stub, user)}
    assert set(got) == {e.event_id for e in sent}
    for m in sent:
        stored_copy = got[m.event_id]
        stored_copy.ClearField("received_at")
        assert stored_copy == m


def test_retried_event_is_stored_once(stub):
    user = unique()
    sent = event(user, event_id=unique("retry"))
    first = stub.RecordActivity(service_pb2.RecordActivityRequest(event=sent))
    again = stub.RecordActivity(service_pb2.RecordActivityRequest(event=sent))
    assert not first.duplicate and again.duplicate
    assert again.received_at == first.received_at
    assert len(stored(stub, user)) == 1


def test_server_assigns_time_sortable_ids(stub):
    user = unique()
    ids = [
        stub.RecordActivity(service_pb2.RecordActivityRequest(event=event(user))).event_id
        for _ in range(3)
    ]
    assert all(UUID7.fullmatch(i) for i in ids), ids
    assert ids == sorted(ids)


def test_batch_reports_each_item_and_stores_only_valid_ones(stub):
    user = unique()
    old = event(user, event_id=unique("old"))
    stub.RecordActivity(service_pb2.RecordActivityRequest(event=old))
    fresh_id = unique("fresh")
    batch = [
        event(user, FAILURE, event_id=fresh_id),
        old,  # stored before
        events_pb2.ActivityEvent(user_id=user, event_id=unique("bad")),  # no type, no time
        event(user, API_CALL, event_id=fresh_id),  # same id earlier in this batch
        event(user, API_CALL, api_path="/v1/items"),  # server-assigned id
    ]
    reply = stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=batch))
    statuses = [r.status for r in reply.results]
    assert statuses == [
        service_pb2.RECORD_STATUS_ACCEPTED,
        service_pb2.RECORD_STATUS_DUPLICATE,
        service_pb2.RECORD_STATUS_INVALID,
        service_pb2.RECORD_STATUS_DUPLICATE,
        service_pb2.RECORD_STATUS_ACCEPTED,
    ]
    assert [r.index for r in reply.results] == [0, 1, 2, 3, 4]
    assert (reply.accepted_count, reply.duplicate_count, reply.invalid_count) == (2, 2, 1)
    assert {v.field for v in reply.results[2].violations} == {
        "events[2].type",
        "events[2].occurred_at",
    }
    listed = stored(stub, user)
    assert sorted(e.event_id for e in listed) == sorted(
        [old.event_id, fresh_id, reply.results[4].event_id]
    )
    assert next(e for e in listed if e.event_id == fresh_id).type == FAILURE  # first one wins


def test_concurrent_retries_store_each_event_once(stub):
    user = unique()
    events = [event(user, event_id=unique("c")) for _ in range(50)]
    # Every event sent three times by 24 concurrent callers, singly and in batches.
    calls = [("one", e) for e in events] * 2 + [
        ("batch", events[i : i + 10]) for i in range(0, 50, 10)
    ]

    def send(call):
        kind, payload = call
        if kind == "one":
            return [stub.RecordActivity(service_pb2.RecordActivityRequest(event=payload)).duplicate]
        reply = stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=payload))
        return [r.status == service_pb2.RECORD_STATUS_DUPLICATE for r in reply.results]

    with ThreadPoolExecutor(24) as pool:
        flags = [flag for result in pool.map(send, calls) for flag in result]
    assert flags.count(False) == 50  # exactly one acceptance per event
    listed = stored(stub, user)
    assert sorted(e.event_id for e in listed) == sorted(e.event_id for e in events)


NOW = datetime.now(UTC)

BAD_EVENTS = [
    ("user_id", dict(user_id="")),
    ("type", dict(type=events_pb2.ACTIVITY_TYPE_UNSPECIFIED)),
    ("type", dict(type=99)),
    ("occurred_at", dict(at=NOW + timedelta(hours=1))),
    ("occurred_at", dict(at=datetime(1999, 12, 31, tzinfo=UTC))),
    ("user_agent", dict(user_agent="x" * 1025)),
    ("user_id", dict(user_id="u" * 257)),
    ("user_id", dict(user_id="nul\x00byte")),
    # Identifiers refuse every control character, TAB, CR and LF included,
    # and the format and separator characters that reorder or break a line.
    ("user_id", dict(user_id="alice\tadmin")),
    ("user_id", dict(user_id="alice\r\nbob")),
    ("user_id", dict(user_id="alice\n")),
    ("user_id", dict(user_id="alice\u2028bob")),
    ("user_id", dict(user_id="alice\u2029bob")),
    ("user_id", dict(user_id="alice\x85bob")),
    ("user_id", dict(user_id="evil\u202egnp.exe")),
    ("user_id", dict(user_id="ali\u200bce")),
    ("user_id", dict(user_id="alice\x1b[2J")),
    ("device_id", dict(device_id="d\t1")),
    ("session_id", dict(session_id="s\n1")),
    ("peer_group", dict(peer_group="ops\tadmins")),
    ("api_path", dict(api_path="/v1/a\r\n")),
    ("source", dict(source="sshd\u2028")),
    ("attributes", dict(attributes={"k\tey": "v"})),
    # Free text keeps TAB only.
    ("user_agent", dict(user_agent="Mozilla\n5.0")),
    ("user_agent", dict(user_agent="Mozilla\r5.0")),
    ("user_agent", dict(user_agent="\x1b]0;owned\x07")),
    ("city", dict(city="Berlin\x85")),
    ("attributes[note]", dict(attributes={"note": "line1\nline2"})),
    ("event_id", dict(event_id="has space")),
    ("source_ip", dict(source_ip="999.1.1.1")),
    ("country_code", dict(country_code="Germany")),
    ("timezone", dict(timezone="Mars/Olympus")),
    ("latitude", dict(latitude=91.0, longitude=0.0)),
    ("longitude", dict(latitude=0.0)),
    ("status_code", dict(status_code=1000)),
    ("bytes_transferred", dict(bytes_transferred=-1)),
    ("attributes", dict(attributes={f"k{i}": "v" for i in range(33)})),
    ("attributes[k]", dict(attributes={"k": "v" * 1025})),
]


@pytest.mark.parametrize(
    "field,change", BAD_EVENTS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_EVENTS)]
)
def test_invalid_event_is_refused_naming_the_field(stub, field, change):
    user = unique()
    change = dict(change)
    at = change.pop("at", None)
    m = event(change.pop("user_id", user), change.pop("type", LOGIN), at=at, **change)
    with pytest.raises(grpc.RpcError) as info:
        stub.RecordActivity(service_pb2.RecordActivityRequest(event=m))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"event.{field}" in violations(info.value)
    assert stored(stub, user) == []


def test_missing_time_and_event_are_named(stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.RecordActivity(
            service_pb2.RecordActivityRequest(
                event=events_pb2.ActivityEvent(user_id="x", type=LOGIN)
            )
        )
    assert "event.occurred_at" in violations(info.value)
    with pytest.raises(grpc.RpcError) as info:
        stub.RecordActivity(service_pb2.RecordActivityRequest())
    assert "event" in violations(info.value)


def test_batch_over_the_limit_is_refused_whole(stub):
    user = unique()
    with pytest.raises(grpc.RpcError) as info:
        stub.RecordActivities(
            service_pb2.RecordActivitiesRequest(events=[event(user) for _ in range(1001)])
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "events" in violations(info.value)
    assert stored(stub, user) == []
    full = stub.RecordActivities(
        service_pb2.RecordActivitiesRequest(events=[event(user) for _ in range(1000)])
    )
    assert full.accepted_count == 1000


def test_batch_items_with_line_breaking_characters_are_refused_naming_the_field(stub):
    """A TAB, CR or LF in a user_id once printed a forged row in `uba logs`."""
    user = unique()
    batch = [
        event(user, event_id=unique("ok")),
        event(f"{user}\tforged", event_id=unique("tab")),
        event(
            user,
            event_id=unique("lf"),
            user_agent="agent\n2026-01-01 00:00:00  login_success  root",
        ),
        event(user, event_id=unique("cr"), session_id="s\r1"),
        event(user, event_id=unique("free-tab"), user_agent="agent\twith tab"),
    ]
    reply = stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=batch))
    assert [r.status for r in reply.results] == [service_pb2.RECORD_STATUS_ACCEPTED] + [
        service_pb2.RECORD_STATUS_INVALID
    ] * 3 + [service_pb2.RECORD_STATUS_ACCEPTED]
    named = [{v.field: v.description for v in r.violations} for r in reply.results[1:4]]
    assert list(named[0]) == ["events[1].user_id"] and "U+0009" in named[0]["events[1].user_id"]
    assert (
        list(named[1]) == ["events[2].user_agent"] and "U+000A" in named[1]["events[2].user_agent"]
    )
    assert (
        list(named[2]) == ["events[3].session_id"] and "U+000D" in named[2]["events[3].session_id"]
    )
    assert sorted(e.event_id for e in stored(stub, user)) == sorted(
        [batch[0].event_id, batch[4].event_id]
    )
