"""Request bodies at the gateway, against the real server (SQLite and
PostgreSQL): an oversized body is refused by the gateway itself with 413
(not sent to the server and answered 429 "Received message larger than
max"), and what happens to JSON fields the API does not define (ignored:
the transcoder offers no way to refuse them; see the README's API section).
"""

from __future__ import annotations

import json
import socket
import uuid
from datetime import UTC, datetime

import pytest
from support.events import stored_events

from gateway.gateway_support import API

MiB = 1 << 20
LIMIT = 16 * MiB  # GatewayConfig.max_body_bytes, the server's message limit

pytestmark = pytest.mark.timeout(180)


def _event(user: str, **extra) -> dict:
    return {
        "userId": user,
        "type": "ACTIVITY_TYPE_LOGIN_SUCCESS",
        "eventId": f"body-{uuid.uuid4().hex}",
        "occurredAt": datetime.now(UTC).isoformat(),
        **extra,
    }


def _post_raw(address: str, path: str, key: str, body_size: int, tail: bytes) -> tuple[int, dict]:
    """POSTs `body_size` bytes (whitespace, then `tail`) over a raw socket and
    reads the answer even if the gateway closes the connection before the
    body is all sent (it answers as soon as the limit is crossed)."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            (
                f"POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n"
                f"authorization: Bearer {key}\r\ncontent-length: {body_size}\r\n\r\n"
            ).encode()
        )
        pad, chunk = body_size - len(tail), b" " * MiB
        try:
            while pad > 0:
                sock.sendall(chunk[:pad])
                pad -= min(pad, MiB)
            sock.sendall(tail)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-body: the answer is already on its way
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(
                data
            ):
                piece = sock.recv(65536)
                if not piece:
                    break
                data += piece
        except ConnectionResetError:
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body.strip() else {}


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            return int(line.split(":", 1)[1])
    return 0


def test_oversized_body_is_413_from_the_gateway_and_nothing_is_stored(gateway):
    user = f"huge-{uuid.uuid4().hex[:8]}"
    tail = json.dumps(_event(user)).encode()
    status, body = _post_raw(
        gateway.address, f"{API}/events/", gateway.upstream.api_key, 96 * MiB, tail
    )
    assert status == 413, body
    assert body == {"code": 3, "message": f"request body larger than {LIMIT} bytes"}
    # Just over the limit too, with a body whose message would be small ...
    status, body = _post_raw(
        gateway.address, f"{API}/events/", gateway.upstream.api_key, LIMIT + 1, tail
    )
    assert status == 413, body
    # ... and a body that is one large message (the server used to answer
    # it: 429, "Received message larger than max").
    large = json.dumps(_event(user, city="x" * (LIMIT + MiB))).encode()
    status, body = _post_raw(
        gateway.address, f"{API}/events/", gateway.upstream.api_key, len(large), large
    )
    assert status == 413, body
    assert stored_events(gateway.upstream.stub, user) == []
    # The gateway and the server carry on.
    assert gateway.client.post(f"{API}/events/", _event(user)).status == 200


def test_body_under_the_limit_reaches_the_server(gateway):
    user = f"big-{uuid.uuid4().hex[:8]}"
    event = _event(user)
    status, body = _post_raw(
        gateway.address,
        f"{API}/events/",
        gateway.upstream.api_key,
        4 * MiB,
        json.dumps(event).encode(),
    )
    assert status == 200, body
    assert [e.event_id for e in stored_events(gateway.upstream.stub, user)] == [event["eventId"]]


def test_unknown_json_fields_are_ignored_and_misspelt_required_ones_are_missing(gateway):
    """The documented decision: a field the API does not define is dropped
    (Envoy's transcoder parses JSON that way and has no option to refuse
    it). So a misspelt optional field is lost without a word, and a
    misspelt required field is reported as missing, by its right name."""
    user = f"unknown-{uuid.uuid4().hex[:8]}"
    event = _event(user, sourceIpAddress="203.0.113.9", bogus={"nested": [1, 2]})
    response = gateway.client.post(f"{API}/events/", event)
    assert response.status == 200, response
    (stored,) = stored_events(gateway.upstream.stub, user)
    assert stored.event_id == event["eventId"] and stored.source_ip == ""

    misspelt = _event(user)
    misspelt["userID"] = misspelt.pop("userId")
    response = gateway.client.post(f"{API}/events/", misspelt)
    assert response.status == 400, response
    violations = [
        v["field"] for d in response.json().get("details", []) for v in d.get("fieldViolations", [])
    ]
    assert any(v.endswith("user_id") for v in violations), response
