"""Building a notification's envelope from the domain's change: the API's
own JSON mapping (the REST gateway's, lowerCamelCase), so a receiver parses
what the REST API returns (uba.delivery.envelope describes the shape)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from google.protobuf.json_format import MessageToDict

from uba.api import converters
from uba.delivery import envelope as env
from uba.domain.alerts import Alert
from uba.domain.anomalies import Anomaly
from uba.domain.incidents import Incident
from uba.domain.notifications import ALERT_CREATED, INCIDENT_CREATED
from uba.v1 import alerts_pb2, anomalies_pb2, incidents_pb2


def alert_json(alert: Alert) -> dict:
    message = alerts_pb2.Alert()
    converters.alert_to_pb(alert, message)
    return MessageToDict(message)


def anomaly_json(anomaly: Anomaly) -> dict:
    message = anomalies_pb2.Anomaly()
    converters.anomaly_to_pb(anomaly, message)
    return MessageToDict(message)


def incident_json(incident: Incident) -> dict:
    message = incidents_pb2.Incident()
    converters.incident_to_pb(incident, message)
    return MessageToDict(message)


def envelope(
    message_id: str,
    event_type: str,
    change: Alert | Incident | None,
    anomalies: Sequence[Anomaly],
    at: datetime,
) -> dict:
    """The uba.domain.notifications.Envelope the composition root gives the
    Notifier."""
    if isinstance(change, Alert):
        return dict(
            env.alert_envelope(
                alert_json(change),
                [anomaly_json(a) for a in anomalies],
                created=event_type == ALERT_CREATED,
                id=message_id,
                timestamp=at,
            )
        )
    if isinstance(change, Incident):
        return dict(
            env.incident_envelope(
                incident_json(change),
                created=event_type == INCIDENT_CREATED,
                id=message_id,
                timestamp=at,
            )
        )
    return dict(env.test_envelope("", id=message_id, timestamp=at))
