"""Hostile REST, generated (hypothesis), through the real Envoy gateway in
front of the real server, on SQLite and PostgreSQL: every REST method gets
invalid UTF-8 (in bodies, query strings, path parameters and the request
line), bodies over the 16 MiB limit, JSON nested 10,000 deep, wrong JSON
types for every field, extreme and malformed timestamps and durations,
SQL-looking strings, unknown fields and enum names, tampered page tokens,
empty bodies and wrong content types; the alert stream (server-sent events)
and the log download get the same query strings.

Whatever comes in: never a 5xx (TrainModel's 501 in basic mode excepted:
that method needs the enhanced packages); an error is a JSON
google.rpc.Status (integer `code`, a `message`), a 2xx a JSON answer (or the
event stream or file it promises); Envoy and the server still answer
afterwards and log no unexpected error; and ingest stores exactly what it
acknowledged: nothing of a batch refused whole, nothing of an item reported
invalid, every accepted text field verbatim (checked over gRPC with
ListLogs). Each test prints how many cases ran on each backend.
"""

from __future__ import annotations

import base64
import csv
import http.client
import io
import json
import re
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.events import FAILURE, event, stored_events
from support.server import keyed_channel

from gateway.gateway_support import API, Response
from uba.v1 import service_pb2

EXAMPLES = 60
RUNS: dict[str, int] = {}
MiB = 1024 * 1024
BODY_LIMIT = 16 * MiB
# Paths stay below 8 KiB with room to spare: the gateway forwards the
# original path to the server as a header, and gRPC refuses metadata beyond
# 8 KiB now and then (RESOURCE_EXHAUSTED, REST 429) and always beyond 16 KiB.
MAX_PATH_BYTES = 5000

# google.rpc.Code values each HTTP error status may carry.
CODES_OF = {
    400: {3, 9, 11},
    401: {16},
    403: {7},
    404: {5},
    405: {12},
    408: {4},
    409: {6, 10},
    413: {3, 8},
    429: {8},
    431: {3},
    501: {12},
}

# -- what hostile input is made of -------------------------------------------------------------

SQLISH = [
    "' OR '1'='1",
    "'; DROP TABLE events; --",
    '" OR 1=1 --',
    "%",
    "_",
    "%%",
    "\\",
    "admin'--",
    "1; SELECT pg_sleep(5)",
    "') UNION SELECT * FROM api_keys --",
    "NULL",
    "'' ''",
    "*",
    "$1",
    "?",
    "1' AND SLEEP(5)#",
    "\\'; --",
    "events; --",
    "%' --",
    "[a-z]%",
]
BAD_UTF8 = [
    b"\xff",
    b"\xfe\xff",
    b"\xc3\x28",
    b"\xa0\xa1",
    b"\xe2\x28\xa1",
    b"\xf0\x28\x8c\xbc",
    b"\x80",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
    b"\xf8\x88\x80\x80\x80",
    b"\xc3",
    b"\xef\xbf",
]
TIMESTAMPS = [
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "10000-01-01T00:00:00Z",
    "-0001-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "1969-12-31T23:59:59.999999999Z",
    "1999-12-31T23:59:59Z",
    "2000-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999Z",
    "+10000-01-01T00:00:00Z",
    "2024-02-30T00:00:00Z",
    "2024-13-01T00:00:00Z",
    "2024-01-01T24:00:00Z",
    "2016-12-31T23:59:60Z",
    "2024-01-01T00:00:00+14:00",
    "2024-01-01T00:00:00-25:00",
    "2024-01-01t00:00:00z",
    "2024-01-01 00:00:00Z",
    "2024-01-01T00:00:00.1234567891Z",
    "2024-01-01",
    "2024-01-01T00:00:00",
    "now",
    "",
    "Z",
    "-1",
    "0",
    "1e400",
    "yesterday",
    "2024-01-01T00:00:00ZZ",
]
DURATIONS = [
    "0s",
    "-1s",
    "1.5s",
    "3600s",
    "7776000s",
    "7776001s",
    "315576000000s",
    "315576000001s",
    "-315576000001s",
    "9223372036854775807s",
    "1.0000000001s",
    "s",
    "1h",
    "3600",
    "-0s",
    "NaNs",
    "",
    "2678400s",
    "2678401s",
    "0.000000001s",
]
# JSON tokens json.dumps cannot write: out-of-range and malformed numbers,
# truncated literals.
RAW_TOKENS = [
    "1e400",
    "-1e400",
    "NaN",
    "Infinity",
    "-Infinity",
    "01",
    "1.",
    ".5",
    "+1",
    "0x10",
    "tru",
    "nul",
    "'x'",
    "undefined",
    "1e",
    "--1",
    "18446744073709551616",
    "-9223372036854775809",
    "9223372036854775807",
    "4294967296",
    "2147483648",
    "1.0e1",
    "-0",
    "1E2",
]
BIG_NUMBERS = [
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "2147483648",
    "-2147483649",
    "1e2",
    "1.5",
    "0x10",
    " 5",
    "NaN",
    "Infinity",
    "-0",
    "00",
    "٣",
]
ENUM_PREFIXES = {
    "ActivityType": "ACTIVITY_TYPE",
    "Severity": "SEVERITY",
    "AlertStatus": "ALERT_STATUS",
    "Resolution": "RESOLUTION",
}
ENUM_NAMES = {
    "ActivityType": [
        "ACTIVITY_TYPE_LOGIN_SUCCESS",
        "ACTIVITY_TYPE_LOGIN_FAILURE",
        "ACTIVITY_TYPE_API_CALL",
    ],
    "Severity": ["SEVERITY_LOW", "SEVERITY_HIGH", "SEVERITY_CRITICAL"],
    "AlertStatus": ["ALERT_STATUS_OPEN", "ALERT_STATUS_RESOLVED"],
    "Resolution": ["RESOLUTION_BENIGN", "RESOLUTION_TRUE_POSITIVE", "RESOLUTION_FALSE_POSITIVE"],
}


@dataclass(frozen=True)
class Raw:
    """A JSON token written as it is (see to_json)."""

    text: str


def to_json(value, ensure_ascii: bool = True) -> bytes:
    """json.dumps, except that Raw values go out verbatim, so that a body can
    carry 1e400, NaN, 01 or a truncated literal."""
    tokens: list[str] = []

    def default(o):
        if isinstance(o, Raw):
            tokens.append(o.text)
            return f"\x00raw{len(tokens) - 1}\x00"
        raise TypeError(type(o))

    text = json.dumps(value, default=default, ensure_ascii=ensure_ascii)
    for i, token in enumerate(tokens):
        text = text.replace(json.dumps(f"\x00raw{i}\x00", ensure_ascii=ensure_ascii), token, 1)
    return text.encode("utf-8")


hostile_words = st.one_of(
    st.text(min_size=1, max_size=30),
    st.sampled_from(SQLISH),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=4).map(
        lambda s: s * 60
    ),  # long
    st.text(
        alphabet=st.characters(max_codepoint=0x1F), min_size=1, max_size=3
    ),  # control characters
)
hostile_text = st.one_of(hostile_words, st.just(""))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(BIG_NUMBERS),
    hostile_text,
    st.sampled_from(RAW_TOKENS).map(Raw),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.one_of(st.text(max_size=10), st.sampled_from(["userId", "user_id", "a", "events"])),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=8,
)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def recent() -> st.SearchStrategy[str]:
    return st.integers(0, 60 * 24 * 30).map(
        lambda m: rfc3339(datetime.now(UTC) - timedelta(minutes=m))
    )


timestamps = st.one_of(
    st.sampled_from(TIMESTAMPS),
    recent(),
    st.integers(-10, 60 * 24 * 365).map(
        lambda m: rfc3339(datetime.now(UTC) + timedelta(minutes=m))
    ),  # future
    st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
    ).map(rfc3339),
    st.integers(-(2**63), 2**63).map(str),
    hostile_text,
)
durations = st.one_of(
    st.sampled_from(DURATIONS), st.integers(-(2**63), 2**63).map(lambda s: f"{s}s"), hostile_text
)


def enum_values(enum: str) -> st.SearchStrategy:
    """Names (exact, lower case, unknown, unprefixed, zero), numbers, text."""
    names, prefix = ENUM_NAMES[enum], ENUM_PREFIXES[enum]
    return st.one_of(
        st.sampled_from(names),
        st.sampled_from(names).map(str.lower),
        st.sampled_from(
            [
                f"{prefix}_UNSPECIFIED",
                f"{prefix}_NOPE",
                "NOPE",
                names[0] + " ",
                names[0][len(prefix) + 1 :],
            ]
        ),
        st.integers(-(2**33), 2**33),
        st.integers(-2, 9).map(str),
        hostile_text,
    )


int_values = st.one_of(
    st.integers(-(2**65), 2**65),
    st.sampled_from(BIG_NUMBERS),
    st.integers(-(2**65), 2**65).map(str),
    st.floats(allow_nan=False, allow_infinity=False),
)
KIND_VALUES = {
    "string": hostile_text,
    "timestamp": timestamps,
    "duration": durations,
    "int": int_values,
    "double": st.one_of(
        st.floats(),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1", "91", "1e400"]),
        st.sampled_from(["1e400", "NaN", "-1e400"]).map(Raw),
    ),
    "bool": st.one_of(st.booleans(), st.sampled_from(["true", "false", "yes", 1, 0, "1"])),
    "map": st.dictionaries(hostile_text, st.one_of(hostile_text, json_values), max_size=4),
}
for _enum in ENUM_NAMES:
    KIND_VALUES[_enum] = enum_values(_enum)


def hostile(kind: str) -> st.SearchStrategy:
    """A value for a field of `kind`: of its kind but hostile, or of any JSON type."""
    return st.one_of(KIND_VALUES[kind], json_values)


# -- the REST methods ----------------------------------------------------------------------------

EVENT_FIELDS = {  # JSON name -> kind
    "eventId": "string",
    "userId": "string",
    "type": "ActivityType",
    "occurredAt": "timestamp",
    "sourceIp": "string",
    "userAgent": "string",
    "deviceId": "string",
    "sessionId": "string",
    "countryCode": "string",
    "city": "string",
    "latitude": "double",
    "longitude": "double",
    "timezone": "string",
    "peerGroup": "string",
    "apiMethod": "string",
    "apiPath": "string",
    "statusCode": "int",
    "bytesTransferred": "int",
    "sessionDuration": "duration",
    "attributes": "map",
    "source": "string",
    "receivedAt": "timestamp",
}
TEXT_FIELDS = {name for name, kind in EVENT_FIELDS.items() if kind == "string"}


def snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


@dataclass(frozen=True)
class Method:
    rpc: str
    verb: str
    path: str  # after API, without the trailing slash; {alert_id} / {user_id} for path parameters
    query: dict[str, str]  # query parameters (proto names) -> kind
    body: dict[str, str]  # JSON body fields -> kind ("event"/"events" for ingest)
    shape: str = "unary"  # or "sse", "download"


LIST_TIME = {"start_time": "timestamp", "end_time": "timestamp"}
PAGING = {"page_size": "int", "page_token": "string"}
METHODS = [
    Method("RecordActivity", "POST", "/events", {}, {"event": "event"}),
    Method("RecordActivities", "POST", "/events/batch", {}, {"events": "events"}),
    Method("GetDashboard", "GET", "/dashboard", {"window": "duration"}, {}),
    Method(
        "ListLogs",
        "GET",
        "/logs",
        {"user_id": "string", "type": "ActivityType", **LIST_TIME, "source_ip": "string", **PAGING},
        {},
    ),
    Method(
        "ExportLogs",
        "GET",
        "/logs/download",
        {
            "user_id": "string",
            "type": "ActivityType",
            **LIST_TIME,
            "source_ip": "string",
            "format": "string",
        },
        {},
        "download",
    ),
    Method(
        "ListAnomalies",
        "GET",
        "/anomalies",
        {
            "user_id": "string",
            "detector": "string",
            "min_severity": "Severity",
            **LIST_TIME,
            **PAGING,
        },
        {},
    ),
    Method(
        "ListAlerts",
        "GET",
        "/alerts",
        {
            "user_id": "string",
            "detector": "string",
            "min_severity": "Severity",
            "status": "AlertStatus",
            **PAGING,
        },
        {},
    ),
    Method(
        "StreamAlerts",
        "GET",
        "/alerts/stream",
        {"after_seq": "int", "min_severity": "Severity", "user_id": "string", "detector": "string"},
        {},
        "sse",
    ),
    Method("AcknowledgeAlert", "POST", "/alerts/{alert_id}/acknowledge", {}, {"note": "string"}),
    Method(
        "ResolveAlert",
        "POST",
        "/alerts/{alert_id}/resolve",
        {},
        {"resolution": "Resolution", "note": "string", "suppressFor": "duration"},
    ),
    Method("GetUserBaseline", "GET", "/users/{user_id}/baseline", {}, {}),
    Method(
        "Backfill",
        "POST",
        "/admin/backfill",
        {},
        {"startTime": "timestamp", "endTime": "timestamp", "raiseAlerts": "bool"},
    ),
    Method(
        "TrainModel", "POST", "/admin/train", {}, {"startTime": "timestamp", "endTime": "timestamp"}
    ),
    Method(
        "ListAuditEvents",
        "GET",
        "/admin/audit",
        {"actor": "string", "action": "string", **PAGING},
        {},
    ),
    Method("GetCapabilities", "GET", "/capabilities", {}, {}),
]
BY_RPC = {m.rpc: m for m in METHODS}
POSTS = [m for m in METHODS if m.verb == "POST"]
GETS = [m for m in METHODS if m.verb == "GET"]
LISTS = ["ListLogs", "ListAnomalies", "ListAlerts", "ListAuditEvents"]
TIMED = [
    m
    for m in METHODS
    if "timestamp" in m.query.values()
    or "duration" in m.query.values()
    or {"timestamp", "duration", "event", "events"} & set(m.body.values())
]


@dataclass
class World:
    """What the module's server holds for the tests to point at."""

    alert_ids: list[str]
    tokens: dict[str, tuple[dict[str, str], str]]  # list rpc -> (query, a real next_page_token)
    basic_mode: bool


# -- talking to the gateway ----------------------------------------------------------------------


def send(
    gateway,
    verb: str,
    path: str,
    body: bytes | None = None,
    headers: dict | None = None,
    timeout: float = 60.0,
) -> Response:
    """One HTTP/1.1 request with exactly these headers (plus the key, unless
    `headers` has another authorization, and a content-length), the path as
    given."""
    all_headers = {
        "accept": "application/json",
        **gateway.client.default_headers,
        **(headers or {}),
    }
    conn = gateway.client.connection(timeout)
    try:
        conn.putrequest(verb, path, skip_accept_encoding=True)
        for name, value in all_headers.items():
            conn.putheader(name, value)
        if body is not None or verb in ("POST", "PUT", "PATCH"):
            conn.putheader("content-length", str(len(body or b"")))
        conn.endheaders(body)
        response = conn.getresponse()
        return Response(response.status, response.headers, response.read())
    finally:
        conn.close()


def send_raw(gateway, request: bytes, timeout: float = 30.0) -> Response:
    """Bytes on the wire as they are (for a request line no client would write)."""
    host, port = gateway.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return Response(response.status, response.headers, response.read())


def query_string(pairs: list[tuple[str, str | bytes]]) -> str:
    if not pairs:
        return ""
    return "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


def fill_path(method: Method, value: str | bytes = "x") -> str:
    path = method.path
    for name in ("{alert_id}", "{user_id}"):
        path = path.replace(name, quote(value, safe=""))
    return API + path


def assert_status_shape(response: Response, allowed: set[int] | None = None, context=None) -> None:
    """An error is a JSON google.rpc.Status whose code fits the HTTP status."""
    assert response.content_type == "application/json", (response, context)
    body = json.loads(response.body)
    assert isinstance(body, dict), (response, context)
    # (Envoy's own refusal of a path with %00 in it carries an empty message.)
    assert type(body.get("code")) is int and isinstance(body.get("message"), str), (
        response,
        context,
    )
    assert body["code"] in (allowed or CODES_OF.get(response.status, set())), (response, context)
    assert isinstance(body.get("details", []), list), (response, context)


def assert_answer(
    response: Response, method: Method | None, world: World, context=None, head: bool = False
) -> None:
    """No 5xx; an error is a google.rpc.Status; a 2xx is JSON (or the file
    the download promises)."""
    if (
        response.status == 501
        and method is not None
        and method.rpc == "TrainModel"
        and world.basic_mode
    ):
        assert_status_shape(response, {12}, context)  # needs the enhanced packages: documented
        return
    assert response.status < 500, (response, context)
    assert 200 <= response.status < 300 or 400 <= response.status < 500, (response, context)
    if head:  # no body to look at
        return
    if response.status >= 400:
        assert_status_shape(response, context=context)
    elif method is not None and method.shape == "download":
        assert_file(response, context)
    else:
        assert response.content_type == "application/json", (response, context)
        assert isinstance(json.loads(response.body), dict), (response, context)


def assert_file(response: Response, context=None) -> list[dict]:
    """The download is a whole file in the format its content type names."""
    text = response.body.decode("utf-8")
    if response.content_type == "text/csv":
        rows = list(csv.DictReader(io.StringIO(text)))
    elif response.content_type == "application/json":
        rows = json.loads(text)
        assert isinstance(rows, list), (response, context)
    else:
        assert response.content_type == "application/x-ndjson", (response, context)
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert re.fullmatch(
        r'attachment; filename="uba-logs-\d{8}T\d{6}Z\.(csv|json|ndjson)"',
        response.headers.get("content-disposition", ""),
    ), (response, context)
    return rows


def open_sse(gateway, path: str, headers: dict | None = None) -> tuple[Response, dict | None]:
    """Opens the alert stream; returns its answer and, when it is a stream,
    the first event (the server sends a heartbeat at once), then closes it."""
    conn = gateway.client.connection(30)
    try:
        all_headers = {
            "accept": "text/event-stream",
            **gateway.client.default_headers,
            **(headers or {}),
        }
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for name, value in all_headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        raw = conn.getresponse()
        if raw.status != 200:
            return Response(raw.status, raw.headers, raw.read()), None
        lines = []
        while True:
            line = raw.readline()
            assert line, "the stream ended before its first event"
            line = line.decode("utf-8").rstrip("\r\n")
            if line:
                lines.append(line)
            elif lines:
                break
        data = "\n".join(kept[5:].lstrip() for kept in lines if kept.startswith("data:"))
        return Response(raw.status, raw.headers, b""), json.loads(data)
    finally:
        conn.close()


def call(
    gateway,
    world: World,
    method: Method,
    path: str,
    body: bytes | None = None,
    headers: dict | None = None,
    verb: str | None = None,
    context=None,
) -> Response:
    """Calls a method and checks the answer's shape whatever it is."""
    verb = verb or method.verb
    if method.shape == "sse" and verb == "GET":
        response, first = open_sse(gateway, path, headers)
        if response.status == 200:
            assert response.headers["content-type"].startswith("text/event-stream"), (
                response,
                context,
            )
            assert isinstance(first, dict) and first["seq"].isdigit(), (first, context)
            assert "heartbeat" in first or "alert" in first, (first, context)
            return response
    else:
        response = send(gateway, verb, path, body, headers)
    assert_answer(
        response, method if verb == method.verb else None, world, context, head=verb == "HEAD"
    )
    return response


def stored(stub, user: str) -> set[str]:
    if "\x00" in user:
        # No stored text can hold a NUL (ingest refuses control characters):
        # the filter itself is refused, naming it.
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListLogs(service_pb2.ListLogsRequest(user_id=user), timeout=30)
        assert (
            refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            and "user_id" in refused.value.details()
        )
        return set()
    return {e.event_id for e in stored_events(stub, user, timeout=30)}


def stored_by_id(stub, user: str) -> dict[str, object]:
    return {e.event_id: e for e in stored_events(stub, user, timeout=30)}


def unique() -> str:
    return uuid.uuid4().hex[:12]


def _count(name: str, gateway) -> None:
    key = f"{name}[{gateway.upstream.backend}]"
    RUNS[key] = RUNS.get(key, 0) + 1


FAST = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print(f"\nhostile REST cases run: {RUNS}")


@pytest.fixture(scope="module")
def world(gateway) -> World:
    """Two alerts (a burst of failed logins each), pages of events, anomalies,
    alerts and audit entries, so that the tests can point at real alert ids
    and tamper with real page tokens."""
    stub = gateway.upstream.stub
    now = datetime.now(UTC)
    users = [f"world-{unique()}" for _ in range(2)]
    events = [
        event(
            u,
            FAILURE,
            now - timedelta(minutes=3) + timedelta(seconds=8 * i),
            source_ip="203.0.113.9",
        )
        for u in users
        for i in range(12)
    ]
    reply = stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=events), timeout=30)
    assert reply.accepted_count == len(events)
    for _ in range(2):  # audited calls
        list(stub.ExportLogs(service_pb2.ExportLogsRequest(user_id=users[0]), timeout=30))
    alerts = stub.ListAlerts(service_pb2.ListAlertsRequest(), timeout=30).alerts
    assert len(alerts) >= 2, alerts
    tokens: dict[str, tuple[dict[str, str], str]] = {}
    for rpc, query in [
        ("ListLogs", {"user_id": users[0], "page_size": "2"}),
        ("ListAnomalies", {"page_size": "1"}),
        ("ListAlerts", {"page_size": "1"}),
        ("ListAuditEvents", {"page_size": "1"}),
    ]:
        for _ in range(50):  # the audit trail is written in the background
            response = gateway.client.get(API + BY_RPC[rpc].path + "/", params=query)
            assert response.status == 200, response
            if response.json()["nextPageToken"]:
                break
        tokens[rpc] = (query, response.json()["nextPageToken"])
        assert tokens[rpc][1], (rpc, response)
    caps = gateway.client.get(f"{API}/capabilities/").json()
    return World(
        [a.alert_id for a in alerts], tokens, caps["analyticsMode"] == "ANALYTICS_MODE_BASIC"
    )


# The server's INTERNAL (uba.api.errors), an exception gRPC caught around a
# handler, an exception asyncio caught. (Not grpcio's "Invalid encoding"
# error with its traceback, logged for each header value that is not UTF-8.)
UNEXPECTED = re.compile(
    r"unexpected error in|raised by servicer method|Exception in callback|never retrieved"
)


@pytest.fixture(autouse=True)
def still_serving(gateway):
    """After each test: both processes alive, the server logged no
    unexpected error, and a known-good call answers through Envoy (REST and
    native gRPC) and straight at the server (health)."""
    logged = len(UNEXPECTED.findall(gateway.upstream.log()))
    yield
    assert gateway.upstream.proc.poll() is None, gateway.upstream.log()[-3000:]
    assert gateway.process.process.poll() is None, gateway.process.log_tail()
    new = UNEXPECTED.findall(gateway.upstream.log())[logged:]
    assert not new, gateway.upstream.log()[-5000:]
    response = gateway.client.get(f"{API}/capabilities/")
    assert (
        response.status == 200 and response.json()["storageBackend"] == gateway.upstream.backend
    ), response
    health = health_pb2_grpc.HealthStub(gateway.upstream.channel).Check(
        health_pb2.HealthCheckRequest(), timeout=10
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert (
        gateway.grpc_stub()
        .GetCapabilities(service_pb2.GetCapabilitiesRequest(), timeout=10)
        .max_batch_size
    )


# -- events and what became of them --------------------------------------------------------------

NOT_A_STRING = object()


@st.composite
def hostile_event(draw, user: str):
    """A valid event of `user` with some fields replaced by hostile values or
    left out, some unknown fields, each key in camelCase or snake_case.
    Returns the JSON object, the user it belongs to ("" for none,
    NOT_A_STRING when userId is not text) and its fields by JSON name."""
    now = datetime.now(UTC)
    fields: dict = {
        "eventId": f"h-{unique()}",
        "userId": user,
        "type": draw(st.sampled_from(ENUM_NAMES["ActivityType"])),
        "occurredAt": rfc3339(now - timedelta(minutes=draw(st.integers(0, 60 * 24 * 7)))),
    }
    optional = {
        "sourceIp": "203.0.113.7",
        "userAgent": "Mozilla/5.0",
        "deviceId": "laptop-1",
        "city": "Zürich",
        "countryCode": "CH",
        "timezone": "Europe/Zurich",
        "latitude": 47.37,
        "longitude": 8.54,
        "statusCode": 200,
        "bytesTransferred": "1234",
        "sessionDuration": "60s",
        "attributes": {"k": "v"},
        "source": "hostile-rest",
        "sessionId": "s-1",
        "peerGroup": "eng",
        "apiMethod": "GET",
        "apiPath": "/v1/things",
    }
    for name in draw(st.lists(st.sampled_from(sorted(optional)), max_size=6, unique=True)):
        fields[name] = optional[name]
    for name in draw(st.lists(st.sampled_from(sorted(EVENT_FIELDS)), max_size=3, unique=True)):
        value = draw(hostile(EVENT_FIELDS[name]))
        if name in ("userId", "eventId") and isinstance(value, str) and value:
            value = f"{value}{unique()}"  # hostile, and still this case's own
        fields[name] = value
    for name in draw(
        st.lists(st.sampled_from(["userId", "type", "occurredAt", "eventId"]), max_size=1)
    ):
        fields.pop(name, None)
    owner = fields.get("userId", "")
    owner = "" if owner is None else owner if isinstance(owner, str) else NOT_A_STRING
    body = {(snake(k) if draw(st.booleans()) else k): v for k, v in fields.items()}
    for _ in range(draw(st.integers(0, 2))):
        body[
            draw(
                st.sampled_from(
                    ["bogus", "user", "event", "__proto__", "occurred_at_us", "id", "events"]
                )
            )
        ] = draw(json_values)
    return body, owner, fields


def assert_stored_verbatim(stub, owner: str, event_id: str, fields: dict) -> None:
    """The accepted event is stored under its user with every text field as sent."""
    found = stored_by_id(stub, owner)
    assert set(found) == {event_id}, (found, fields)
    e = found[event_id]
    for name in TEXT_FIELDS:
        if isinstance(fields.get(name), str) and (fields[name] or name != "eventId"):
            assert getattr(e, snake(name)) == fields[name], (name, getattr(e, snake(name)), fields)
    if isinstance(fields.get("attributes"), dict) and all(
        isinstance(v, str) for v in fields["attributes"].values()
    ):
        assert dict(e.attributes) == fields["attributes"], (dict(e.attributes), fields)


# -- the tests -----------------------------------------------------------------------------------


@FAST
@given(data=st.data())
def test_record_activity_stores_the_event_exactly_or_nothing(gateway, world, data):
    user = f"rest-{unique()}"
    body, owner, fields = data.draw(hostile_event(user))
    suffix = data.draw(st.sampled_from(["/", ""]))
    response = call(
        gateway,
        world,
        BY_RPC["RecordActivity"],
        f"{API}/events{suffix}",
        to_json(body, data.draw(st.booleans())),
        {"content-type": "application/json"},
        context=body,
    )
    _count("RecordActivity", gateway)
    stub = gateway.upstream.stub
    if response.status == 200:
        reply = response.json()
        assert owner is not NOT_A_STRING and owner, (body, reply)
        assert reply["duplicate"] is False, reply
        if isinstance(fields.get("eventId"), str) and fields["eventId"]:
            assert reply["eventId"] == fields["eventId"], (body, reply)
        assert_stored_verbatim(stub, owner, reply["eventId"], fields)
    else:
        assert stored(stub, user) == set(), body
        if isinstance(owner, str) and owner:
            assert stored(stub, owner) == set(), body


@FAST
@given(data=st.data())
def test_record_activities_stores_accepted_items_only_and_nothing_of_a_refused_batch(
    gateway, world, data
):
    user = f"batch-{unique()}"
    items = data.draw(st.lists(hostile_event(user), min_size=0, max_size=6))
    bodies = [b for b, _, _ in items]
    if items and data.draw(st.integers(0, 4)) == 0:  # an item that repeats another's event id
        source, target = (
            data.draw(st.integers(0, len(items) - 1)),
            data.draw(st.integers(0, len(items) - 1)),
        )
        if isinstance(items[source][2].get("eventId"), str) and items[source][2]["eventId"]:
            key = "event_id" if "event_id" in bodies[target] else "eventId"
            bodies[target].pop("event_id", None)
            bodies[target][key] = items[target][2]["eventId"] = items[source][2]["eventId"]
    padded = data.draw(st.integers(0, 9)) == 0  # over the batch limit: refused whole
    if padded:
        filler = {
            "userId": user,
            "type": "ACTIVITY_TYPE_LOGIN_SUCCESS",
            "occurredAt": rfc3339(datetime.now(UTC)),
        }
        bodies = bodies + [filler] * (1001 - len(bodies))
    envelope: dict = {"events": bodies}
    for _ in range(data.draw(st.integers(0, 1))):
        envelope[data.draw(st.sampled_from(["event", "bogus", "eventsCount"]))] = data.draw(
            json_values
        )
    response = call(
        gateway,
        world,
        BY_RPC["RecordActivities"],
        f"{API}/events/batch/",
        to_json(envelope),
        {"content-type": "application/json"},
        context=envelope if not padded else "padded",
    )
    _count("RecordActivities", gateway)
    stub = gateway.upstream.stub
    owners = {o for _, o, _ in items if isinstance(o, str) and o} | {user}
    if response.status != 200:
        for owner in owners:
            assert stored(stub, owner) == set(), (owner, response)
        return
    assert not padded, response
    reply = response.json()
    results = reply["results"]
    assert [r["index"] for r in results] == list(range(len(items))), reply
    statuses = [r["status"] for r in results]
    assert set(statuses) <= {
        "RECORD_STATUS_ACCEPTED",
        "RECORD_STATUS_DUPLICATE",
        "RECORD_STATUS_INVALID",
    }, reply
    assert (reply["acceptedCount"], reply["duplicateCount"], reply["invalidCount"]) == (
        statuses.count("RECORD_STATUS_ACCEPTED"),
        statuses.count("RECORD_STATUS_DUPLICATE"),
        statuses.count("RECORD_STATUS_INVALID"),
    ), reply
    for (body, owner, _fields), result in zip(items, results, strict=True):
        assert owner is not NOT_A_STRING, (body, result)  # proto3 JSON: text is a JSON string
        if result["status"] == "RECORD_STATUS_INVALID":
            assert result["violations"], result
        if not owner:
            assert result["status"] == "RECORD_STATUS_INVALID", (body, result)
    everything: set[str] = set()
    for owner in owners:
        accepted = {
            r["eventId"]
            for (_, o, _), r in zip(items, results, strict=True)
            if o == owner and r["status"] == "RECORD_STATUS_ACCEPTED"
        }
        ids = stored(stub, owner)
        assert ids == accepted, (owner, reply)
        everything |= ids
    for result in results:  # "already stored earlier (or earlier in the same batch)"
        if result["status"] == "RECORD_STATUS_DUPLICATE":
            assert result["eventId"] in everything, (result, reply)
    for (_, owner, fields), result in zip(items, results, strict=True):
        if result["status"] == "RECORD_STATUS_ACCEPTED" and owner != user:
            assert_stored_verbatim(stub, owner, result["eventId"], fields)


@FAST
@given(data=st.data())
def test_every_post_method_takes_any_json_body(gateway, world, data):
    method = data.draw(st.sampled_from(POSTS))
    user = f"post-{unique()}"
    if method.rpc == "RecordActivity":
        body = data.draw(st.one_of(json_values, hostile_event(user).map(lambda e: e[0])))
    elif method.rpc == "RecordActivities":
        body = data.draw(
            st.one_of(
                json_values,
                st.fixed_dictionaries(
                    {
                        "events": st.one_of(
                            json_values,
                            st.lists(
                                st.one_of(json_values, hostile_event(user).map(lambda e: e[0])),
                                max_size=3,
                            ),
                        )
                    }
                ),
            )
        )
    else:
        fields = {}
        for name, kind in method.body.items():
            if data.draw(st.booleans()):
                fields[snake(name) if data.draw(st.booleans()) else name] = data.draw(hostile(kind))
        body = data.draw(st.one_of(st.just(fields), json_values))
    alert_id = data.draw(st.one_of(st.sampled_from(world.alert_ids), hostile_words))
    path = fill_path(method, alert_id) + data.draw(st.sampled_from(["/", ""]))
    response = call(
        gateway,
        world,
        method,
        path,
        to_json(body),
        {"content-type": "application/json"},
        context=(method.rpc, body),
    )
    _count("post bodies", gateway)
    if method.rpc == "RecordActivity":
        owner = body.get("userId", body.get("user_id")) if isinstance(body, dict) else None
        if response.status == 200:
            assert isinstance(owner, str) and response.json()["eventId"] in stored(
                gateway.upstream.stub, owner
            ), body
        elif isinstance(owner, str) and owner.startswith(user):
            assert stored(gateway.upstream.stub, owner) == set(), body


def query_value(kind: str) -> st.SearchStrategy[str | bytes]:
    """A query parameter value of `kind`, hostile; bytes may be invalid UTF-8."""
    return st.one_of(
        KIND_VALUES["string"]
        if kind == "string"
        else st.one_of(KIND_VALUES[kind], json_values).map(
            lambda v: (
                v.text if isinstance(v, Raw) else v if isinstance(v, str) else to_json(v).decode()
            )
        ),
        hostile_text,
        st.tuples(st.text(max_size=5), st.sampled_from(BAD_UTF8), st.text(max_size=5)).map(
            lambda t: t[0].encode() + t[1] + t[2].encode()
        ),
    )


GOOD_QUERY_VALUES = {
    "timestamp": recent(),
    "duration": st.sampled_from(["3600s", "86400s", "60s"]),
    "int": st.integers(0, 1000).map(str),
    "string": hostile_text,
    **{enum: st.sampled_from(names) for enum, names in ENUM_NAMES.items()},
}


@st.composite
def hostile_query(draw, method: Method, world: World) -> list[tuple[str, str | bytes]]:
    """Some of the method's parameters, each with a good or a hostile value,
    sometimes a real page token, sometimes a parameter it does not have."""
    pairs: list[tuple[str, str | bytes]] = []
    names = sorted(method.query)
    for name in (
        draw(st.lists(st.sampled_from(names), max_size=len(names), unique=True)) if names else []
    ):
        kind = method.query[name]
        good = (
            st.sampled_from(["csv", "json", "ndjson", "CSV"])
            if name == "format"
            else GOOD_QUERY_VALUES[kind]
        )
        pairs.append((name, draw(st.one_of(good, query_value(kind)))))
    if method.rpc in world.tokens and draw(st.booleans()):
        pairs.append(("page_token", world.tokens[method.rpc][1]))
    for _ in range(draw(st.integers(0, 4)) // 4):  # unknown, misspelt, JSON-named, repeated, nested
        pairs.append(
            (
                draw(
                    st.one_of(
                        st.sampled_from(
                            [
                                "bogus",
                                "userId",
                                "pageSize",
                                "user_id",
                                "event.user_id",
                                "page_size[]",
                                "",
                                "=",
                                "after_seq",
                                "afterSeq",
                                "format",
                            ]
                        ),
                        st.text(max_size=8),
                    )
                ),
                draw(query_value("string")),
            )
        )
    return pairs


# Header values as bytes, any but CR and LF (which would end the header).
header_values = st.one_of(
    st.integers(-(2**65), 2**70).map(str), hostile_text, st.binary(max_size=8)
).map(lambda v: (v if isinstance(v, bytes) else v.encode()).replace(b"\r", b"").replace(b"\n", b""))


def fit(path_and_pairs: tuple[str, list]) -> str:
    """The path with as many of the parameters as keep it below MAX_PATH_BYTES."""
    path, pairs = path_and_pairs
    while len(path + query_string(pairs)) > MAX_PATH_BYTES:
        pairs = pairs[:-1]
    return path + query_string(pairs)


def filters_hold(method: Method, pairs: list, response: Response) -> None:
    """An answer that lists things lists only what the text filters name,
    exactly (no pattern matching of %, _ or quotes)."""
    given = {}
    for name, value in pairs:
        if name in given:
            return  # repeated: which one applies is the transcoder's business
        given[name] = value
    wanted = {
        k: v
        for k, v in given.items()
        if k in ("user_id", "detector", "source_ip") and isinstance(v, str)
    }
    if not wanted or response.status != 200:
        return
    if method.rpc == "ListLogs":
        items, names = response.json()["events"], {"user_id": "userId", "source_ip": "sourceIp"}
    elif method.rpc in ("ListAnomalies", "ListAlerts"):
        items, names = (
            response.json()["anomalies" if method.rpc == "ListAnomalies" else "alerts"],
            {"user_id": "userId", "detector": "detector"},
        )
    elif method.rpc == "ExportLogs":
        items, names = assert_file(response), {"user_id": "user_id", "source_ip": "source_ip"}
    else:
        return
    for item in items:
        for name, value in wanted.items():
            if value and name in names:
                assert item[names[name]] == value, (name, value, item)


@FAST
@given(data=st.data())
def test_every_get_method_takes_any_query_string(gateway, world, data):
    method = data.draw(st.sampled_from(GETS))
    pairs = data.draw(hostile_query(method, world))
    segment = data.draw(
        st.one_of(st.just("someone"), hostile_words, st.sampled_from(world.alert_ids))
    )
    path = fit((fill_path(method, segment) + data.draw(st.sampled_from(["/", ""])), pairs))
    headers: dict[str, bytes] = {}
    if method.shape == "sse" and data.draw(st.booleans()):
        headers["last-event-id"] = data.draw(header_values)
    if data.draw(st.integers(0, 9)) == 0:  # no key, or a hostile one: 401, whatever else is wrong
        headers["authorization"] = data.draw(
            st.one_of(header_values, header_values.map(lambda v: b"Bearer " + v))
        )
    verb = data.draw(
        st.sampled_from([method.verb] * 8 + ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
    )
    body = to_json(data.draw(json_values)) if verb in ("POST", "PUT", "PATCH") else None
    response = call(
        gateway, world, method, path, body, headers, verb=verb, context=(verb, path, headers)
    )
    _count("get query strings", gateway)
    if verb == method.verb:
        filters_hold(method, pairs, response)


@FAST
@given(data=st.data())
def test_invalid_utf8_anywhere_is_400_and_stores_nothing(gateway, world, data):
    bad = data.draw(st.sampled_from(BAD_UTF8))
    where = data.draw(
        st.sampled_from(["body string", "body key", "body token", "query", "path", "request line"])
    )
    user = f"utf8-{unique()}"
    if where.startswith("body"):
        method = data.draw(st.sampled_from(POSTS))
        ingest = method.rpc in ("RecordActivity", "RecordActivities")
        if ingest:  # a valid event, the bytes in one of its text fields (or keys)
            fields = {
                "userId": user,
                "type": "ACTIVITY_TYPE_LOGIN_SUCCESS",
                "occurredAt": rfc3339(datetime.now(UTC)),
                "attributes": {"k": "v"},
            }
            names = sorted(TEXT_FIELDS - {"userId"})
        else:  # the method's text fields, or one it does not have
            fields = {"resolution": "RESOLUTION_BENIGN"} if method.rpc == "ResolveAlert" else {}
            names = sorted(n for n, kind in method.body.items() if kind == "string") or ["note"]
        name = data.draw(st.sampled_from(names))
        fields[name] = "\x00mark\x00"
        text = to_json(fields)
        marker = to_json("\x00mark\x00")
        if where == "body string":
            text = text.replace(marker, b'"a' + bad + b'z"')
        elif where == "body key":
            text = (
                text.replace(marker, b'"v"').replace(b'"k"', b'"k' + bad + b'"')
                if ingest
                else text.replace(marker, b'{"k' + bad + b'":1}')
            )
        else:
            text = (
                text.replace(marker, bad)
                if data.draw(st.booleans())
                else bad + text.replace(marker, b"1")
            )
        if method.rpc == "RecordActivities":
            text = b'{"events":[' + text + b"]}"
        path = fill_path(method, data.draw(st.sampled_from(world.alert_ids))) + "/"
        response = call(
            gateway, world, method, path, text, {"content-type": "application/json"}, context=text
        )
    elif where == "query":
        method = data.draw(st.sampled_from([m for m in METHODS if m.query]))
        name = data.draw(st.sampled_from(sorted(method.query)))
        value = (
            data.draw(st.text(max_size=5)).encode() + bad + data.draw(st.text(max_size=5)).encode()
        )
        path = fill_path(method, "x") + "/" + query_string([(name, value)])
        response = call(gateway, world, method, path, context=path)
        assert response.json()["message"].startswith(name), (
            response
        )  # the refusal names the parameter
    elif where == "path":
        method = data.draw(st.sampled_from([m for m in METHODS if "{" in m.path]))
        path = fill_path(method, b"a" + bad) + "/"
        response = call(
            gateway,
            world,
            method,
            path,
            to_json({}) if method.verb == "POST" else None,
            context=path,
        )
        assert re.match(r"(alert_id|user_id): not valid UTF-8", response.json()["message"]), (
            response
        )
    else:  # raw bytes, not percent-encoded: the HTTP parser's business
        method = data.draw(st.sampled_from(METHODS))
        target = (
            fill_path(method, "x").encode() + b"/?" + (b"user_id=" if method.query else b"q=") + bad
        )
        response = send_raw(
            gateway,
            method.verb.encode() + b" " + target + b" HTTP/1.1\r\nhost: uba\r\n"
            b"authorization: "
            + gateway.client.default_headers["authorization"].encode()
            + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        assert_answer(response, method, world, context=target)
    _count("invalid UTF-8", gateway)
    assert response.status == 400, (where, response)
    assert_status_shape(response, {3}, where)
    assert stored(gateway.upstream.stub, user) == set()


def nested(kind: str, depth: int) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    if kind == "events":
        return b'{"events":' * depth + b"[]" + b"}" * depth
    return (b'{"a":[' * depth) + b"null" + (b"]}" * depth)


@settings(FAST, max_examples=30)
@given(data=st.data())
def test_deeply_nested_json_is_400_and_stores_nothing(gateway, world, data):
    method = data.draw(st.sampled_from(POSTS))
    depth = data.draw(st.sampled_from([1_000, 10_000, 100_000]))
    deep = nested(data.draw(st.sampled_from(["array", "object", "events", "mixed"])), depth)
    user = f"deep-{unique()}"
    valid = {
        "userId": user,
        "type": "ACTIVITY_TYPE_LOGIN_SUCCESS",
        "occurredAt": rfc3339(datetime.now(UTC)),
    }
    where = data.draw(st.sampled_from(["top", "field", "unknown field", "item"]))
    if where == "top":
        body = deep
    else:
        outer = dict(valid)
        if method.rpc == "RecordActivities":
            outer = {"events": [valid, outer] if where == "item" else [valid]}
        name = {
            "field": data.draw(
                st.sampled_from(["attributes", "userId", "note", "startTime", "events"])
            ),
            "unknown field": "bogus",
            "item": "attributes",
        }[where]
        text = to_json(outer)
        if method.rpc == "RecordActivities" and where == "item":
            head, tail = text.rsplit(b"}]", 1)
            body = head + b',"' + name.encode() + b'":' + deep + b"}]" + tail
        else:
            body = text[:-1] + b',"' + name.encode() + b'":' + deep + b"}"
    path = fill_path(method, data.draw(st.sampled_from(world.alert_ids))) + "/"
    response = call(
        gateway,
        world,
        method,
        path,
        body,
        {"content-type": "application/json"},
        context=(where, depth),
    )
    _count("deep JSON", gateway)
    assert response.status == 400, (method.rpc, where, depth, response)
    assert stored(gateway.upstream.stub, user) == set()


@settings(FAST, max_examples=8)
@given(data=st.data())
def test_bodies_over_the_limit_are_refused_and_store_nothing(gateway, world, data):
    """Over 16 MiB of JSON: the gateway answers 413 itself, whatever message
    the body would become (an over-size one, or a small one: padding, an
    unknown field, a timestamp with 16 MiB of zeros in its fraction),
    nothing is stored, and both processes live on. Should a body ever get
    through, ingest still stores exactly what it acknowledges."""
    method = data.draw(st.sampled_from(POSTS))
    size = data.draw(st.integers(BODY_LIMIT + 1, BODY_LIMIT + 4 * MiB))
    user = f"huge-{unique()}"
    valid = {
        "userId": user,
        "type": "ACTIVITY_TYPE_LOGIN_SUCCESS",
        "occurredAt": rfc3339(datetime.now(UTC)),
        "eventId": f"huge-{unique()}",
    }
    ingest = method.rpc in ("RecordActivity", "RecordActivities")
    shapes = (
        ["one string", "many small", "padding", "unknown field"]
        if ingest
        else ["one string", "padding"]
    )
    shape = data.draw(st.sampled_from(shapes))
    if shape == "many small":  # events of a batch, attributes of one event
        one = to_json({**valid, "city": "x" * 1000})
        count = size // (len(one) + 1) + 1
        body = b'{"events":[' + b",".join([one] * count) + b"]}"
        if method.rpc == "RecordActivity":
            body = (
                one[:-1]
                + b',"attributes":{'
                + b",".join(b'"k%d":"%s"' % (i, b"v" * 1000) for i in range(size // 1000 + 1))
                + b"}}"
            )
    elif shape in (
        "one string",
        "unknown field",
    ):  # text the method has (or not), or a timestamp's fraction
        text, fraction = (b"a", b"", b""), (b"0", b"2024-01-01T00:00:00.", b"Z")
        name, (fill, start, end) = {
            "RecordActivity": ("city", text),
            "RecordActivities": ("city", text),
            "AcknowledgeAlert": ("note", text),
            "ResolveAlert": ("note", text),
            "Backfill": ("startTime", fraction),
            "TrainModel": ("startTime", fraction),
        }[method.rpc]
        if shape == "unknown field":
            name = "bogus"
        head = (
            (to_json(valid)[:-1] + b"," if ingest else b"{") + b'"' + name.encode() + b'":"' + start
        )
        body = head + fill * (size - len(head) - len(end) - 2) + end + b'"}'
        if method.rpc == "RecordActivities":
            body = b'{"events":[' + body + b"]}"
    else:  # whitespace around a small body
        small = to_json(
            valid
            if method.rpc == "RecordActivity"
            else {"events": [valid]}
            if ingest
            else {"note": "n"}
        )
        body = b" " * (size - len(small)) + small
    assert len(body) > BODY_LIMIT
    path = fill_path(method, data.draw(st.sampled_from(world.alert_ids))) + "/"
    try:
        response = call(
            gateway,
            world,
            method,
            path,
            body,
            {"content-type": "application/json"},
            context=(method.rpc, shape, len(body)),
        )
    except (ConnectionResetError, BrokenPipeError):
        # The gateway answered 413 and closed while the body was still being
        # sent (a busy machine sends slowly): refused before the end of it.
        response = None
    _count("over 16 MiB", gateway)
    ids = stored(gateway.upstream.stub, user)
    in_the_message = shape == "many small" or (
        shape == "one string" and method.rpc not in ("Backfill", "TrainModel")
    )
    if response is None:
        assert ids == set(), (method.rpc, shape)
        assert send(gateway, "GET", f"{API}/capabilities/").status == 200  # both live on
    elif in_the_message:
        assert response.status in (400, 413, 429), (method.rpc, shape, response)
        assert ids == set()
    elif method.rpc == "RecordActivity" and response.status == 200:
        assert ids == {valid["eventId"]}, response
    elif method.rpc == "RecordActivities" and response.status == 200:
        accepted = {
            r["eventId"]
            for r in response.json()["results"]
            if r["status"] == "RECORD_STATUS_ACCEPTED"
        }
        assert ids == accepted, response
    else:
        assert ids == set(), response


@FAST
@given(data=st.data())
def test_extreme_timestamps_and_durations_everywhere(gateway, world, data):
    method = data.draw(st.sampled_from(TIMED))
    user = f"time-{unique()}"
    path = fill_path(method, data.draw(st.sampled_from(world.alert_ids))) + "/"
    if method.verb == "GET":
        pairs = []
        for name, kind in method.query.items():
            if kind in ("timestamp", "duration") and data.draw(st.booleans()):
                value = data.draw(timestamps if kind == "timestamp" else durations)
                pairs.append((name, value))
        if "user_id" in method.query:
            pairs.append(("user_id", user))
        call(gateway, world, method, fit((path, pairs)), context=pairs)
    else:
        fields: dict = {}
        if method.rpc in ("RecordActivity", "RecordActivities"):
            fields = {
                "userId": user,
                "type": "ACTIVITY_TYPE_LOGIN_SUCCESS",
                "eventId": f"t-{unique()}",
            }
            names = {
                "occurredAt": timestamps,
                "receivedAt": timestamps,
                "sessionDuration": durations,
            }
        else:
            names = {
                n: (timestamps if k == "timestamp" else durations)
                for n, k in method.body.items()
                if k in ("timestamp", "duration")
            }
            if method.rpc == "ResolveAlert":
                fields["resolution"] = "RESOLUTION_BENIGN"
        for name, strategy in names.items():
            if name == "occurredAt" or data.draw(st.booleans()):
                fields[name] = data.draw(
                    st.one_of(strategy, st.integers(-(2**64), 2**64), st.floats())
                )
        body = {"events": [fields]} if method.rpc == "RecordActivities" else fields
        response = call(
            gateway,
            world,
            method,
            path,
            to_json(body),
            {"content-type": "application/json"},
            context=body,
        )
        if method.rpc in ("RecordActivity", "RecordActivities"):
            ok = response.status == 200 and (
                method.rpc == "RecordActivity"
                or response.json()["results"][0]["status"] == "RECORD_STATUS_ACCEPTED"
            )
            found = stored_by_id(gateway.upstream.stub, user)
            assert set(found) == ({fields["eventId"]} if ok else set()), (fields, response)
            if ok:  # only a time from 2000 up to a few minutes ahead is stored
                when = found[fields["eventId"]].occurred_at.ToDatetime(tzinfo=UTC)
                assert (
                    datetime(2000, 1, 1, tzinfo=UTC)
                    <= when
                    <= datetime.now(UTC) + timedelta(minutes=6)
                ), fields
    _count("timestamps", gateway)


def tamper(token: str) -> st.SearchStrategy[str]:
    """Ways to spoil a real page token: its text, its JSON, its position."""
    decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))

    def pack(obj) -> str:
        raw = obj if isinstance(obj, bytes) else to_json(obj)
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    positions = st.lists(
        st.one_of(
            st.integers(-(2**64), 2**64),
            st.floats(),
            st.text(max_size=5),
            st.none(),
            st.lists(st.integers(), max_size=2),
        ),
        max_size=4,
    )
    return st.one_of(
        positions.map(lambda p: pack({**decoded, "p": p})),
        st.integers(-(2**63), 2**63 - 1).map(
            lambda v: pack({**decoded, "p": [v] * len(decoded["p"])})
        ),
        st.sampled_from([-(2**63), 2**63 - 1, 0, -1]).map(
            lambda v: pack({**decoded, "p": [v] * len(decoded["p"])})
        ),
        json_values.map(lambda v: pack({"p": decoded["p"], "f": v})),
        json_values.map(pack),
        st.sampled_from([1_000, 3_000]).map(
            lambda d: pack(b"[" * d + b"]" * (d % 7))
        ),  # nested too deep
        st.sampled_from([50, 500]).map(lambda d: pack(b'{"p":' * d + b"1" + b"}" * d)),
        st.binary(max_size=40).map(pack),
        st.integers(0, max(len(token) - 1, 0)).map(lambda i: token[:i]),  # truncated
        st.tuples(st.integers(0, max(len(token) - 1, 0)), st.sampled_from("A-_=+/.%~ ")).map(
            lambda t: token[: t[0]] + t[1] + token[t[0] + 1 :]
        ),  # one character changed
        st.just(token + token),
        st.just(token + "="),
        st.just(token.upper()),
        hostile_text,
    )


@FAST
@given(data=st.data())
def test_tampered_page_tokens_are_400_or_a_page(gateway, world, data):
    rpc = data.draw(st.sampled_from(LISTS))
    query, token = world.tokens[rpc]
    spoilt = data.draw(tamper(token))
    other_filters = data.draw(st.booleans())
    params = dict(query)
    if other_filters:
        params["page_size"] = "3"
        if rpc == "ListLogs":
            params["user_id"] = "someone-else"
    params["page_token"] = spoilt
    path = fit((f"{API}{BY_RPC[rpc].path}/", list(params.items())))
    assert "page_token=" in path, len(path)
    response = call(gateway, world, BY_RPC[rpc], path, context=params)
    _count("page tokens", gateway)
    assert response.status in (200, 400), response
    if response.status == 400:
        assert response.json()["code"] == 3 and "page_token" in response.json()["message"], (
            spoilt,
            response,
        )
    # The real token still works with the filters it was issued for.
    again = gateway.client.get(API + BY_RPC[rpc].path + "/", params={**query, "page_token": token})
    assert again.status == 200, again


CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    "application/octet-stream",
    "application/grpc-web",
    "application/grpc-web+json",
    "application/x-protobuf",
    "text/event-stream",
    "",
    "*/*",
    "application/json\x7f",
    None,
    "application/grpc",
    "application/grpc+proto",
    "application/grpc+json",
]
EMPTYISH = [
    b"",
    b"null",
    b"[]",
    b"{}",
    b'""',
    b"0",
    b"true",
    b"{",
    b"}",
    b"[",
    b'{"events"',
    b" ",
    b"\n\n",
    b"a=b&c=d",
    b"<event/>",
    b"\x00",
    b"\xef\xbb\xbf{}",
    b"{}{}",
    b"{} x",
    b"--x\r\n\r\n--x--",
]


@FAST
@given(data=st.data())
def test_empty_bodies_and_wrong_content_types(gateway, world, data):
    method = data.draw(st.sampled_from(POSTS))
    user = f"ctype-{unique()}"
    valid = {
        "userId": user,
        "type": "ACTIVITY_TYPE_LOGIN_SUCCESS",
        "occurredAt": rfc3339(datetime.now(UTC)),
        "eventId": f"c-{unique()}",
    }
    body = data.draw(
        st.one_of(
            st.sampled_from(EMPTYISH),
            st.just(to_json(valid)),
            st.just(to_json({"events": [valid]})),
        )
    )
    content_type = data.draw(st.sampled_from(CONTENT_TYPES))
    headers = {} if content_type is None else {"content-type": content_type}
    path = fill_path(method, data.draw(st.sampled_from(world.alert_ids))) + "/"
    native = bool(
        content_type and content_type.startswith("application/grpc") and "web" not in content_type
    )
    if native:
        # Native gRPC (over HTTP/1.1 here, which gRPC does not speak): a
        # gRPC answer, its status in the grpc-status header.
        response = send(gateway, "POST", path, body, headers)
        assert response.status == 200 and response.headers.get("grpc-status", "0") != "0", response
    else:
        response = call(gateway, world, method, path, body, headers, context=(content_type, body))
    _count("content types", gateway)
    ids = stored(gateway.upstream.stub, user)
    if native:
        assert ids == set(), response
    elif method.rpc == "RecordActivity" and response.status == 200:
        assert ids == {response.json()["eventId"]} == {valid["eventId"]}, response
    elif method.rpc == "RecordActivities" and response.status == 200:
        accepted = {
            r["eventId"]
            for r in response.json()["results"]
            if r["status"] == "RECORD_STATUS_ACCEPTED"
        }
        assert ids == accepted, response
    else:
        assert ids == set(), response


@settings(FAST, max_examples=2 * len(SQLISH))
@given(data=st.data())
def test_sql_looking_text_is_stored_verbatim_and_matched_exactly(gateway, world, data):
    text = data.draw(st.sampled_from(SQLISH))
    user = f"{text}{unique()}"
    ip = data.draw(st.sampled_from(["203.0.113.5", "2001:db8::5"]))
    body = {
        "userId": user,
        "type": "ACTIVITY_TYPE_API_CALL",
        "occurredAt": rfc3339(datetime.now(UTC)),
        "apiPath": text,
        "city": text,
        "deviceId": text,
        "sourceIp": ip,
        "attributes": {text: text},
    }
    response = call(
        gateway,
        world,
        BY_RPC["RecordActivity"],
        f"{API}/events/",
        to_json(body),
        {"content-type": "application/json"},
        context=body,
    )
    assert response.status == 200, response
    event_id = response.json()["eventId"]
    assert_stored_verbatim(gateway.upstream.stub, user, event_id, body)
    # Filters match the text exactly: the pattern characters and quotes match nothing else.
    for value, count in (
        (user, 1),
        (text, None),
        (user[:-1], 0),
        (user + "%", 0),
        (user.upper(), None),
    ):
        listed = gateway.client.get(f"{API}/logs/", params={"user_id": value, "page_size": "1000"})
        assert listed.status == 200, listed
        events = listed.json()["events"]
        assert all(e["userId"] == value for e in events), (value, events)
        if count is not None:
            assert len(events) == count, (value, events)
    download = send(
        gateway,
        "GET",
        f"{API}/logs/download/"
        + query_string(
            [("user_id", user), ("format", data.draw(st.sampled_from(["csv", "json", "ndjson"])))]
        ),
    )
    assert download.status == 200, download
    rows = assert_file(download)
    assert [r["event_id"] for r in rows] == [event_id], rows
    for rpc, name in (
        ("ListAlerts", "detector"),
        ("ListAnomalies", "detector"),
        ("ListAuditEvents", "actor"),
    ):
        listed = gateway.client.get(API + BY_RPC[rpc].path + "/", params={name: text})
        assert listed.status == 200, listed
        key = {
            "ListAlerts": "alerts",
            "ListAnomalies": "anomalies",
            "ListAuditEvents": "auditEvents",
        }[rpc]
        assert listed.json()[key] == [], (rpc, text, listed)
    _count("SQL-looking text", gateway)


MARK = "MARKMARK"
# A request per method with MARK in one text field, and that field's path.
TEXT_FIELD_REQUESTS = [
    ("ListLogs", lambda u: service_pb2.ListLogsRequest(user_id=MARK), "user_id"),
    ("ExportLogs", lambda u: service_pb2.ExportLogsRequest(format=MARK), "format"),
    ("StreamAlerts", lambda u: service_pb2.StreamAlertsRequest(detector=MARK), "detector"),
    ("ListAnomalies", lambda u: service_pb2.ListAnomaliesRequest(detector=MARK), "detector"),
    ("ListAlerts", lambda u: service_pb2.ListAlertsRequest(page_token=MARK), "page_token"),
    ("AcknowledgeAlert", lambda u: service_pb2.AcknowledgeAlertRequest(alert_id=MARK), "alert_id"),
    ("ResolveAlert", lambda u: service_pb2.ResolveAlertRequest(alert_id="a", note=MARK), "note"),
    ("GetUserBaseline", lambda u: service_pb2.GetUserBaselineRequest(user_id=MARK), "user_id"),
    ("ListAuditEvents", lambda u: service_pb2.ListAuditEventsRequest(action=MARK), "action"),
    (
        "RecordActivity",
        lambda u: service_pb2.RecordActivityRequest(event=event(u, city=MARK)),
        "event.city",
    ),
    (
        "RecordActivities",
        lambda u: service_pb2.RecordActivitiesRequest(
            events=[event(u), event(u, attributes={"k": MARK})]
        ),
        "events[1].attributes.value",
    ),
    (
        "RecordActivities",
        lambda u: service_pb2.RecordActivitiesRequest(
            events=[event(u), event(u), event(u, attributes={MARK: "v"})]
        ),
        "events[2].attributes.key",
    ),
]


@settings(FAST, max_examples=40)
@given(data=st.data())
def test_native_grpc_text_that_is_not_utf8_is_invalid_argument_naming_the_field(
    gateway, world, data
):
    """What the transcoder passes on from ?user_id=%FF, sent as gRPC bytes
    (straight, and through Envoy's native gRPC): INVALID_ARGUMENT naming the
    field, not UNKNOWN; nothing stored."""
    rpc, build, field = data.draw(st.sampled_from(TEXT_FIELD_REQUESTS))
    user = f"grpc-utf8-{unique()}"
    bad = (data.draw(st.sampled_from(BAD_UTF8)) + b"a" * len(MARK))[: len(MARK)]
    raw = build(user).SerializeToString().replace(MARK.encode(), bad)
    address = data.draw(st.sampled_from([gateway.upstream.address, gateway.address]))
    channel = keyed_channel(address, gateway.upstream.api_key)
    try:
        method = f"/uba.v1.BehaviorAnalyticsService/{rpc}"
        with pytest.raises(grpc.RpcError) as info:
            if BY_RPC[rpc].shape == "unary":
                channel.unary_unary(method)(raw, timeout=30)
            else:
                list(channel.unary_stream(method)(raw, timeout=30))
    finally:
        channel.close()
    _count("native gRPC, not UTF-8", gateway)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (rpc, info.value)
    assert info.value.details() == f"{field}: not valid UTF-8", (rpc, info.value.details())
    assert stored(gateway.upstream.stub, user) == set()
