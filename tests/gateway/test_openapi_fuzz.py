"""Schemathesis against the real gateway and server, on SQLite and
PostgreSQL, from the OpenAPI document the gateway serves: every operation
(both spellings of every path), valid and invalid requests (schemathesis'
examples, coverage and fuzzing phases), and every answer checked against the
document: no 5xx (not_a_server_error), a status the operation documents
(status_code_conformance), a documented Content-Type
(content_type_conformance), a body that matches the documented schema
(response_schema_conformance) and the documented headers
(response_headers_conformance).

The alert stream (StreamAlerts) is left out: its answer is a server-sent
event stream that never ends, and schemathesis reads an answer to its end,
so every valid case would run into the request timeout. tests/gateway/
test_gateway_alert_stream.py covers it.

The normal run takes EXAMPLES cases per operation with a fixed seed (the
same cases every run); UBA_FAULT_SCALE (make test-faults-large) multiplies
them and draws a new seed, printed so a failure can be replayed.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from support.scale import SCALE, scaled, scaled_timeout

from gateway.gateway_support import API
from uba.gateway.config import OPENAPI_JSON

EXAMPLES = scaled(10)
SEED = 20 if SCALE == 1 else random.SystemRandom().randrange(1 << 32)
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    )
)
DOCUMENT = json.loads(OPENAPI_JSON.read_text())
pytestmark = scaled_timeout(300)


def schemathesis_cli() -> list[str]:
    """Skips (fails where CI=true) when schemathesis is missing."""
    try:
        import schemathesis  # noqa: F401
    except ImportError:
        why = "schemathesis is not installed (pip install 'uba[dev]')"
        if os.environ.get("CI") == "true":
            pytest.fail(f"the OpenAPI fuzz test is required in CI: {why}")
        pytest.skip(why)
    return [sys.executable, "-m", "schemathesis.cli"]


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def seed_data(gateway) -> None:
    """Events of a few users and a failed-login burst (an alert and an
    incident), so that lists, the dashboard and baselines answer with real
    content for the response schemas to be checked against."""
    now = datetime.now(UTC)
    events = []
    for i in range(4):
        user = f"fuzz-user-{i}"
        for j in range(6):
            events.append(
                {
                    "eventId": f"{user}-{j}",
                    "userId": user,
                    "type": "ACTIVITY_TYPE_LOGIN_SUCCESS"
                    if j % 2 == 0
                    else "ACTIVITY_TYPE_API_CALL",
                    "occurredAt": rfc3339(now - timedelta(hours=j, minutes=i)),
                    "sourceIp": f"198.51.100.{i + 1}",
                    "countryCode": "DE",
                    "city": "Berlin",
                    "latitude": 52.5,
                    "longitude": 13.4,
                    "apiMethod": "GET",
                    "apiPath": "/reports",
                    "statusCode": 200,
                    "bytesTransferred": "1024",
                }
            )
    start = now - timedelta(minutes=30)
    events += [
        {
            "eventId": f"fuzz-burst-{i}",
            "userId": "fuzz-burst",
            "type": "ACTIVITY_TYPE_LOGIN_FAILURE",
            "occurredAt": rfc3339(start + timedelta(seconds=4 * i)),
            "sourceIp": "203.0.113.99",
        }
        for i in range(12)
    ]
    response = gateway.client.post(f"{API}/events/batch/", {"events": events})
    assert response.status == 200, response
    assert response.json()["acceptedCount"] == len(events), response
    alerts = gateway.client.get(f"{API}/alerts/", params={"user_id": "fuzz-burst"}).json()
    assert alerts["alerts"], alerts


def test_every_operation_conforms_to_the_document(gateway, tmp_path):
    command = schemathesis_cli()
    seed_data(gateway)
    url = f"http://{gateway.address}{API}/openapi.json"
    run = subprocess.run(
        [
            *command,
            "run",
            url,
            "--header",
            f"Authorization: Bearer {gateway.upstream.api_key}",
            "--checks",
            CHECKS,
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            str(SEED),
            "--exclude-operation-id-regex",
            "^StreamAlerts",
            "--request-timeout",
            "30",
            "--workers",
            "1",
            "--continue-on-failure",
            "--warnings",
            "off",
            "--output-sanitize",
            "true",
        ],
        cwd=tmp_path,  # hypothesis' example database stays in the test's directory
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
        capture_output=True,
        text=True,
        timeout=280 * SCALE,
        check=False,
    )
    summary = run.stdout[-1500:]
    print(
        f"schemathesis on {gateway.upstream.backend}, seed {SEED}, {EXAMPLES} examples:\n{summary}"
    )
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-3000:]
    operations = sum(len(methods) for methods in DOCUMENT["paths"].values())
    streams = sum(
        1
        for methods in DOCUMENT["paths"].values()
        for operation in methods.values()
        if operation["operationId"].startswith("StreamAlerts")
    )
    assert f"Tested: {operations - streams}" in run.stdout, summary
