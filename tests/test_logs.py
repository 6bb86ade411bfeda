"""Listing, filtering, paging and exporting the activity log."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from support.events import API_CALL, FAILURE, LOGIN, event, unique

from uba.v1 import service_pb2

BASE = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def history(uba_server):
    """250 events of one user over ~10 days, a few of another, stored once."""
    stub = uba_server.stub
    user, other = unique("hist"), unique("other")
    events = []
    for i in range(250):
        type_ = (LOGIN, FAILURE, API_CALL)[i % 3]
        events.append(
            event(
                user,
                type_,
                at=BASE + timedelta(hours=i),
                event_id=f"{user}-{i:04d}",
                source_ip=f"10.0.{i % 2}.1",
                api_path='=HYPERLINK("x")' if i == 8 else "",
            )
        )
    events += [event(other, LOGIN, at=BASE + timedelta(hours=i)) for i in range(5)]
    reply = stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=events))
    assert reply.accepted_count == len(events)
    return user, other, events


def list_all(stub, **filters):
    out, token, pages = [], "", 0
    while True:
        page = stub.ListLogs(service_pb2.ListLogsRequest(page_token=token, **filters))
        out.extend(page.events)
        pages += 1
        token = page.next_page_token
        if not token:
            return out, pages


def test_pages_cover_every_event_once_newest_first(uba_server, history):
    user, _, events = history
    listed, pages = list_all(uba_server.stub, user_id=user, page_size=40)
    assert pages == 7  # 250 / 40, rounded up
    ids = [e.event_id for e in listed]
    assert ids == [f"{user}-{i:04d}" for i in reversed(range(250))]


def test_filters_combine(uba_server, history):
    user, other, _ = history
    stub = uba_server.stub
    failures, _ = list_all(stub, user_id=user, type=FAILURE, page_size=1000)
    assert len(failures) == 83 and all(e.type == FAILURE for e in failures)
    req = dict(user_id=user, page_size=1000, source_ip="10.0.1.1")
    start, end = BASE + timedelta(hours=10), BASE + timedelta(hours=20)
    windowed = stub.ListLogs(
        service_pb2.ListLogsRequest(start_time=start, end_time=end, **req)
    ).events
    assert sorted(e.event_id for e in windowed) == [f"{user}-{i:04d}" for i in range(11, 20, 2)]
    assert {e.user_id for e in list_all(stub, user_id=other)[0]} == {other}


def test_page_token_is_bound_to_its_filters(uba_server, history):
    user, _, _ = history
    stub = uba_server.stub
    page = stub.ListLogs(service_pb2.ListLogsRequest(user_id=user, page_size=10))
    for bad in (
        dict(user_id=user + "x", page_token=page.next_page_token),
        dict(user_id=user, page_token="not-a-token"),
        dict(user_id=user, page_token=page.next_page_token[:-3]),
        dict(page_size=1001),
        dict(page_size=-1),
        dict(start_time=BASE, end_time=BASE - timedelta(hours=1)),
    ):
        with pytest.raises(grpc.RpcError) as info:
            stub.ListLogs(service_pb2.ListLogsRequest(**bad))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad


def export(stub, **request) -> tuple[str, bytes, int]:
    chunks = list(stub.ExportLogs(service_pb2.ExportLogsRequest(**request)))
    types = {c.content_type for c in chunks}
    assert len(types) == 1
    return types.pop(), b"".join(c.data for c in chunks), len(chunks)


def test_export_csv_escapes_formulas(uba_server, history):
    user, _, events = history
    content_type, data, _ = export(uba_server.stub, user_id=user, format="csv")
    assert content_type.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert [r["event_id"] for r in rows] == [f"{user}-{i:04d}" for i in range(250)]  # oldest first
    assert rows[8]["api_path"] == '\'=HYPERLINK("x")'
    assert rows[0]["occurred_at"] == "2026-03-02T08:00:00Z" and rows[0]["type"] == "login_success"


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_export_json_formats(uba_server, history, fmt):
    user, _, _ = history
    content_type, data, _ = export(uba_server.stub, user_id=user, type=API_CALL, format=fmt)
    if fmt == "json":
        assert content_type == "application/json"
        records = json.loads(data)
    else:
        assert content_type == "application/x-ndjson"
        records = [json.loads(line) for line in data.decode().splitlines()]
    assert len(records) == 83 and {r["type"] for r in records} == {"api_call"}
    assert records[2]["api_path"] == '=HYPERLINK("x")'  # only CSV needs the escape


def test_export_of_nothing_is_valid(uba_server):
    _, data, _ = export(uba_server.stub, user_id=unique("nobody"), format="json")
    assert json.loads(data) == []
    _, data, _ = export(uba_server.stub, user_id=unique("nobody"))
    assert data.decode().startswith("event_id,user_id,type,")


def test_export_streams_in_chunks(uba_server):
    stub = uba_server.stub
    user = unique("big")
    for start in range(0, 3000, 1000):
        stub.RecordActivities(
            service_pb2.RecordActivitiesRequest(
                events=[
                    event(user, API_CALL, at=BASE + timedelta(seconds=i), user_agent="agent " * 20)
                    for i in range(start, start + 1000)
                ]
            )
        )
    _, data, chunks = export(stub, user_id=user, format="ndjson")
    assert chunks > 5 and len(data.decode().splitlines()) == 3000


def test_unknown_export_format_is_refused(uba_server):
    with pytest.raises(grpc.RpcError) as info:
        export(uba_server.stub, format="xlsx")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_dashboard_counts_the_window(uba_server):
    stub = uba_server.stub
    before = stub.GetDashboard(service_pb2.GetDashboardRequest())
    now = datetime.now(UTC)
    user = unique("dash")
    batch = [
        event(user, LOGIN, at=now - timedelta(minutes=5)),
        event(user, FAILURE, at=now - timedelta(minutes=4)),
        event(user, FAILURE, at=now - timedelta(minutes=3)),
        event(user, LOGIN, at=now - timedelta(days=3)),
    ]  # outside the default 24 h
    stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=batch))
    after = stub.GetDashboard(service_pb2.GetDashboardRequest())
    assert after.totals.event_count - before.totals.event_count == 3
    assert after.totals.login_failure_count - before.totals.login_failure_count == 2
    assert after.totals.user_count - before.totals.user_count == 1
    assert len(after.hourly) in (24, 25)
    assert sum(b.event_count for b in after.hourly) == after.totals.event_count
    week = service_pb2.GetDashboardRequest()
    week.window.FromTimedelta(timedelta(days=7))
    assert stub.GetDashboard(week).totals.event_count - after.totals.event_count >= 1
    week.window.FromTimedelta(timedelta(days=91))
    with pytest.raises(grpc.RpcError) as info:
        stub.GetDashboard(week)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_capabilities_report_the_storage(uba_server):
    caps = uba_server.stub.GetCapabilities(service_pb2.GetCapabilitiesRequest())
    assert caps.storage_backend == uba_server.backend
    assert caps.max_batch_size == 1000 and list(caps.export_formats) == ["csv", "json", "ndjson"]
    assert caps.version
    assert not caps.HasField("event_log")  # stores events itself: no event log to report


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_export_escapes_line_and_paragraph_separators(uba_server, fmt):
    """U+2028 and U+2029 are valid raw in JSON text, but readers that split
    lines the Unicode way (and JavaScript before ES2019) break a record on
    them: free text holding them is exported escaped, and reads back as sent."""
    user = unique("sep")
    texts = ["Mozilla/5.0\u2028forged: record", "a\u2029b", "tab\tand \u2028 both\u2029"]
    sent = [
        event(
            user,
            API_CALL,
            at=BASE + timedelta(minutes=i),
            event_id=f"{user}-{i}",
            user_agent=text,
            city=text[:20],
            attributes={"note": text},
        )
        for i, text in enumerate(texts)
    ]
    assert (
        uba_server.stub.RecordActivities(
            service_pb2.RecordActivitiesRequest(events=sent)
        ).accepted_count
        == 3
    )
    _, data, _ = export(uba_server.stub, user_id=user, format=fmt)
    assert "\u2028".encode() not in data and "\u2029".encode() not in data
    assert b"\\u2028" in data and b"\\u2029" in data
    text = data.decode()
    records = (
        json.loads(text) if fmt == "json" else [json.loads(line) for line in text.splitlines()]
    )
    assert [(r["user_agent"], r["city"], r["attributes"]) for r in records] == [
        (t, t[:20], {"note": t}) for t in texts
    ]
