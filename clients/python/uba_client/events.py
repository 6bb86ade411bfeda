"""Building ActivityEvent messages from plain Python values, and the enum
names people type ("login_success", "high", "benign")."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from uba.v1 import alerts_pb2, anomalies_pb2, events_pb2, incidents_pb2, notifications_pb2

UTC = UTC

# Fields of ActivityEvent that take plain text or numbers as they are.
_SCALAR_FIELDS = (
    "event_id",
    "user_id",
    "source_ip",
    "user_agent",
    "device_id",
    "session_id",
    "country_code",
    "city",
    "timezone",
    "peer_group",
    "api_method",
    "api_path",
    "status_code",
    "bytes_transferred",
    "source",
)


def _enum_value(enum, prefix: str, value: Any, what: str) -> int:
    """An enum number from a number, 'login_success', 'LOGIN_SUCCESS' or
    'ACTIVITY_TYPE_LOGIN_SUCCESS'."""
    if isinstance(value, int):
        return value
    name = str(value).strip().upper().replace("-", "_")
    if not name.startswith(prefix):
        name = prefix + name
    try:
        return enum.Value(name)
    except ValueError:
        known = ", ".join(
            n[len(prefix) :].lower() for n in enum.keys() if not n.endswith("_UNSPECIFIED")
        )
        raise ValueError(f"unknown {what} {value!r}; one of: {known}") from None


def enum_name(enum, prefix: str, number: int) -> str:
    """The short lower-case name of an enum number, e.g. 'login_success'."""
    try:
        return enum.Name(number)[len(prefix) :].lower()
    except ValueError:
        return str(number)


# The enum helpers below return the contract's enum types (ints at run time,
# distinct types to a type checker, which is what message fields expect).


def activity_type(value: Any) -> events_pb2.ActivityType:
    number = _enum_value(events_pb2.ActivityType, "ACTIVITY_TYPE_", value, "activity type")
    return cast(events_pb2.ActivityType, number)


def severity(value: Any) -> anomalies_pb2.Severity:
    number = _enum_value(anomalies_pb2.Severity, "SEVERITY_", value, "severity")
    return cast(anomalies_pb2.Severity, number)


def alert_status(value: Any) -> alerts_pb2.AlertStatus:
    number = _enum_value(alerts_pb2.AlertStatus, "ALERT_STATUS_", value, "alert status")
    return cast(alerts_pb2.AlertStatus, number)


def incident_status(value: Any) -> incidents_pb2.IncidentStatus:
    number = _enum_value(incidents_pb2.IncidentStatus, "INCIDENT_STATUS_", value, "incident status")
    return cast(incidents_pb2.IncidentStatus, number)


def notification_status(value: Any) -> notifications_pb2.NotificationStatus:
    number = _enum_value(
        notifications_pb2.NotificationStatus, "NOTIFICATION_STATUS_", value, "notification status"
    )
    return cast(notifications_pb2.NotificationStatus, number)


def incident_status_name(number: int) -> str:
    return enum_name(incidents_pb2.IncidentStatus, "INCIDENT_STATUS_", number)


def entity_kind_name(number: int) -> str:
    return enum_name(incidents_pb2.EntityKind, "ENTITY_KIND_", number)


def resolution(value: Any) -> alerts_pb2.Resolution:
    number = _enum_value(alerts_pb2.Resolution, "RESOLUTION_", value, "resolution")
    return cast(alerts_pb2.Resolution, number)


def type_name(number: int) -> str:
    return enum_name(events_pb2.ActivityType, "ACTIVITY_TYPE_", number)


def severity_name(number: int) -> str:
    return enum_name(anomalies_pb2.Severity, "SEVERITY_", number)


def status_name(number: int) -> str:
    return enum_name(alerts_pb2.AlertStatus, "ALERT_STATUS_", number)


def resolution_name(number: int) -> str:
    return enum_name(alerts_pb2.Resolution, "RESOLUTION_", number)


def to_datetime(value: Any) -> datetime:
    """An aware UTC datetime from a datetime, ISO 8601 text ('Z' allowed) or
    Unix seconds. Naive values are refused: the guess would be wrong
    somewhere."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)):
        moment = datetime.fromtimestamp(value, UTC)
    else:
        text = str(value).strip()
        try:
            moment = datetime.fromtimestamp(float(text), UTC)
        except ValueError:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {value!r} has no time zone; add one, e.g. 'Z' or '+02:00'")
    return moment.astimezone(UTC)


def to_timedelta(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return timedelta(seconds=float(value))


def event(
    user_id: str, type: Any, occurred_at: Any = None, **fields: Any
) -> events_pb2.ActivityEvent:
    """An ActivityEvent from plain values. `occurred_at` defaults to now;
    `session_duration` takes a timedelta or seconds; `attributes` a mapping.
    Fields given as None or '' are left unset."""
    m = events_pb2.ActivityEvent(user_id=user_id)
    fields = {
        "type": type,
        "occurred_at": datetime.now(UTC) if occurred_at is None else occurred_at,
        **fields,
    }
    for name, value in fields.items():
        if value is None or value == "":
            continue
        try:
            _set_field(m, name, value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"{name}: {exc}") from None
    return m


def _set_field(m: events_pb2.ActivityEvent, name: str, value: Any) -> None:
    if name == "type":
        m.type = activity_type(value)
    elif name == "occurred_at":
        m.occurred_at.FromDatetime(to_datetime(value))
    elif name in _SCALAR_FIELDS:
        setattr(m, name, value)
    elif name in ("latitude", "longitude"):
        setattr(m, name, float(value))
    elif name == "session_duration":
        m.session_duration.FromTimedelta(to_timedelta(value))
    elif name == "attributes":
        if not isinstance(value, Mapping):
            raise ValueError("must be a mapping of text to text")
        m.attributes.update({str(k): str(v) for k, v in value.items()})
    else:
        raise ValueError("ActivityEvent has no such field")
