"""The MFA activity types through REST (Envoy's transcoder reads them from
the descriptor set): a push-bombing episode sent as JSON raises the
mfa_fatigue alert, and the log filter by type works."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from gateway.gateway_support import API


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_mfa_prompts_denials_and_approval_over_rest(gateway):
    user = f"mfa-rest-{uuid.uuid4().hex[:8]}"
    start = datetime.now(UTC) - timedelta(hours=1)
    events = []
    for i in range(6):
        events.append(
            {
                "userId": user,
                "type": "ACTIVITY_TYPE_MFA_CHALLENGE",
                "occurredAt": rfc3339(start + timedelta(seconds=40 * i)),
            }
        )
        events.append(
            {
                "userId": user,
                "type": "ACTIVITY_TYPE_MFA_DENIED",
                "occurredAt": rfc3339(start + timedelta(seconds=40 * i + 10)),
            }
        )
    events.append(
        {
            "userId": user,
            "type": "ACTIVITY_TYPE_MFA_APPROVED",
            "occurredAt": rfc3339(start + timedelta(minutes=5)),
            "sourceIp": "203.0.113.7",
        }
    )
    response = gateway.client.post(f"{API}/events/batch/", {"events": events})
    assert response.status == 200, response
    assert response.json()["acceptedCount"] == len(events)
    denied = gateway.client.get(
        f"{API}/logs", params={"user_id": user, "type": "ACTIVITY_TYPE_MFA_DENIED"}
    ).json()
    assert len(denied["events"]) == 6 and {e["type"] for e in denied["events"]} == {
        "ACTIVITY_TYPE_MFA_DENIED"
    }
    alerts = gateway.client.get(
        f"{API}/alerts", params={"user_id": user, "detector": "mfa_fatigue"}
    ).json()
    (alert,) = alerts["alerts"]
    assert alert["severity"] == "SEVERITY_HIGH"
