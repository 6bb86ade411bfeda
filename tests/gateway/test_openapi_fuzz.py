"""Schemathesis against the real gateway and server, on SQLite and
PostgreSQL, from the OpenAPI document the gateway serves: every operation
(both spellings of every path), valid and invalid requests (schemathesis'
examples, coverage, fuzzing and stateful phases) and every check
schemathesis has (schemathesis.toml enables them all):

- not_a_server_error: no 5xx;
- status_code_conformance, content_type_conformance,
  response_headers_conformance, response_schema_conformance: an answer of a
  documented status, Content-Type, headers and body;
- negative_data_rejection: a request the document forbids is refused;
- positive_data_acceptance: a request the document allows is accepted (or
  answered 401, 403, 404, 409, 429);
- missing_required_header: no key is 401, whatever else the request holds;
- ignored_auth: every operation refuses a missing or wrong key;
- unsupported_method, allow_header_conformance: a method a path does not
  take is 405 with an Allow header naming the documented ones;
- use_after_free, ensure_resource_availability: they follow DELETE and
  create-then-read links; the API has no DELETE and its writes create no
  resource at a URL of their own, so they find nothing to check;
- object_level_authorization: it compares the answers of several identities
  that own different objects; uba has no per-object ownership (a key's scope
  decides what it may call: tests/gateway/test_authz_matrix.py), so it has
  nothing to compare.

Exceptions, each one check on named operations (schemathesis.toml):

- positive_data_acceptance is off for AcknowledgeAlert, ResolveAlert,
  AcknowledgeIncident, ResolveIncident and TrainModel: whether a valid
  request is accepted depends on what is stored (a step the alert's or
  incident's state does not allow, or too little history to train on, is
  FAILED_PRECONDITION, HTTP 400); and for RecordActivity: an event's rules
  (the server's clock, IANA time zones, IP syntax, Unicode categories,
  latitude and longitude together) are beyond OpenAPI 2.0, and its schema
  is shared with RecordActivities, which answers such an event 200 with the
  item marked invalid (tests/test_ingest.py and test_hostile_rest.py check
  the rules);
- response_schema_conformance is off for ExportLogs: the download is a file
  in three formats and OpenAPI 2.0 gives a response one schema (`type:
  file`), against which schemathesis reads a JSON array or NDJSON as one
  JSON string (test_gateway_rest_contract.py checks each format);
- unsupported_method does not try QUERY: Envoy refuses a QUERY request
  without a Content-Type as malformed (400) before any route (with one, it
  is a 405 like the others: test_gateway_behaviour.py).

openapi_fuzz_hooks.py teaches the generator the rules the document cannot
state (a window's end after its start, opaque page tokens, the clock, empty
JSON member names, format characters in an id) and the other spellings
proto3 JSON accepts; its docstring lists them.

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
from pathlib import Path

import pytest
from support.scale import SCALE, scaled, scaled_timeout

from gateway.gateway_support import API
from uba.gateway.config import OPENAPI_JSON

EXAMPLES = scaled(10)
SEED = 20 if SCALE == 1 else random.SystemRandom().randrange(1 << 32)
HERE = Path(__file__).parent
CONFIG = HERE / "schemathesis.toml"
HOOKS = "gateway.openapi_fuzz_hooks"
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
            "--config-file",
            str(CONFIG),
            "run",
            url,
            "--header",
            f"Authorization: Bearer {gateway.upstream.api_key}",
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
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(tmp_path / "events.ndjson"),
        ],
        cwd=tmp_path,  # hypothesis' example database stays in the test's directory
        env={
            **os.environ,
            "NO_COLOR": "1",
            "SCHEMATHESIS_HOOKS": HOOKS,
            "PYTHONPATH": os.pathsep.join(
                [str(HERE.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        },
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
    ran = checks_run(tmp_path / "events.ndjson")
    assert set(ran) == ALL_CHECKS, sorted(ALL_CHECKS - set(ran))
    for operation_id, check in EXCEPTIONS:
        assert operation_id not in ran[check] and f"{operation_id}_slash" not in ran[check]
    assert ran["positive_data_acceptance"] >= {"ListLogs", "Backfill", "ForgetUser"}


# Every check schemathesis has (max_response_time needs a limit, which this
# run does not set), and the exceptions schemathesis.toml makes.
ALL_CHECKS = {
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "ignored_auth",
    "object_level_authorization",
}
EXCEPTIONS = [
    *(
        (operation_id, "positive_data_acceptance")
        for operation_id in (
            "AcknowledgeAlert",
            "ResolveAlert",
            "AcknowledgeIncident",
            "ResolveIncident",
            "TrainModel",
            "RecordActivity",
        )
    ),
    ("ExportLogs", "response_schema_conformance"),
]


def checks_run(report) -> dict[str, set[str]]:
    """Check name -> the operation ids it ran on, from the run's NDJSON
    report."""
    ids = {
        f"{method.upper()} {path}": operation["operationId"]
        for path, methods in DOCUMENT["paths"].items()
        for method, operation in methods.items()
    }
    ran: dict[str, set[str]] = {}
    with open(report) as lines:
        for line in lines:
            event = json.loads(line)
            recorder = event.get("ScenarioFinished", {}).get("recorder", {})
            label = recorder.get("label", "")
            for checks in (recorder.get("checks") or {}).values():
                for check in checks:
                    ran.setdefault(check["name"], set()).add(ids.get(label, label))
    return ran
