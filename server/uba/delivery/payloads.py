"""The notification envelope: an alert or incident change in the API's own
JSON mapping (the REST gateway's, lowerCamelCase), so a receiver parses
what the REST API returns.

    {"id": message id (the idempotency id), "type": "alert.created", ...,
     "timestamp": RFC 3339, "data": {"alert": {...}, "anomalies": [...]}}
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from google.protobuf import json_format

from uba.api import converters
from uba.domain.alerts import Alert
from uba.domain.anomalies import Anomaly
from uba.domain.incidents import Incident
from uba.v1 import alerts_pb2, anomalies_pb2, incidents_pb2


def _json(message) -> dict:
    return json_format.MessageToDict(message)


def envelope(
    message_id: str,
    event_type: str,
    change: Alert | Incident | None,
    anomalies: Sequence[Anomaly],
    at: datetime,
) -> dict:
    data: dict = {}
    if isinstance(change, Alert):
        alert = alerts_pb2.Alert()
        converters.alert_to_pb(change, alert)
        data["alert"] = _json(alert)
        evidence = []
        for anomaly in anomalies:
            m = anomalies_pb2.Anomaly()
            converters.anomaly_to_pb(anomaly, m)
            evidence.append(_json(m))
        data["anomalies"] = evidence
    elif isinstance(change, Incident):
        incident = incidents_pb2.Incident()
        converters.incident_to_pb(change, incident)
        data["incident"] = _json(incident)
    return {
        "id": message_id,
        "type": event_type,
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "data": data,
    }
