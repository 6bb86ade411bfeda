"""Activity events as the domain sees them: plain Python, no protobuf, no ORM."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta


class ActivityType(enum.Enum):
    """What an event records. Values are the names stored and exported."""

    LOGIN_SUCCESS = "login_success"
    LOGIN_FAILURE = "login_failure"
    LOGOUT = "logout"
    API_CALL = "api_call"
    SESSION_START = "session_start"
    PASSWORD_CHANGE = "password_change"
    PERMISSION_CHANGE = "permission_change"
    MFA_CHALLENGE = "mfa_challenge"
    MFA_APPROVED = "mfa_approved"
    MFA_DENIED = "mfa_denied"


# Events that do not prove the user was there: anyone can fail a login (or
# have a push prompt sent) as anyone, from anywhere. Their address, device
# and country do not become the user's known ones, nor a peer's use.
UNPROVEN_TYPES = frozenset(
    {ActivityType.LOGIN_FAILURE, ActivityType.MFA_CHALLENGE, ActivityType.MFA_DENIED}
)


@dataclass(slots=True)
class ActivityEvent:
    """One thing a user did. Timestamps are timezone-aware UTC."""

    event_id: str
    user_id: str
    type: ActivityType
    occurred_at: datetime
    source_ip: str = ""
    user_agent: str = ""
    device_id: str = ""
    session_id: str = ""
    country_code: str = ""
    city: str = ""
    latitude: float | None = None
    longitude: float | None = None
    timezone: str = ""
    peer_group: str = ""
    api_method: str = ""
    api_path: str = ""
    status_code: int = 0
    bytes_transferred: int = 0
    session_duration: timedelta | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    source: str = ""
    # Set by the server when it stores the event.
    received_at: datetime | None = None


# Columns of an exported event, in order; also the CSV header.
EXPORT_FIELDS = (
    "event_id",
    "user_id",
    "type",
    "occurred_at",
    "received_at",
    "source_ip",
    "user_agent",
    "device_id",
    "session_id",
    "country_code",
    "city",
    "latitude",
    "longitude",
    "timezone",
    "peer_group",
    "api_method",
    "api_path",
    "status_code",
    "bytes_transferred",
    "session_duration_seconds",
    "source",
    "attributes",
)

# An exported event as storage reads it for an export (see
# uba.domain.logs.EventReader.export_page): the stored values in
# EXPORT_FIELDS order, with no domain object built. They are the export's
# values, except that times and the session duration are integer
# microseconds (times since the Unix epoch, UTC; the duration None when
# absent) and the attributes are JSON object text (None when there are none).
_STORED_AS_MICROSECONDS = {
    "occurred_at": "occurred_at_us",
    "received_at": "received_at_us",
    "session_duration_seconds": "session_duration_us",
}
EXPORT_ROW = tuple(_STORED_AS_MICROSECONDS.get(name, name) for name in EXPORT_FIELDS)


@dataclass(slots=True, frozen=True)
class EventFilter:
    """Which stored events a list or export selects; empty fields match all."""

    user_id: str = ""
    type: ActivityType | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    source_ip: str = ""


class RecordStatus(enum.Enum):
    """What happened to one event handed to ingest."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    INVALID = "invalid"


@dataclass(slots=True, frozen=True)
class FieldViolation:
    """One field that failed validation, named by its path in the request."""

    field: str
    description: str


@dataclass(slots=True)
class RecordOutcome:
    """The result of ingesting one event."""

    event_id: str
    status: RecordStatus
    received_at: datetime | None = None
    violations: tuple[FieldViolation, ...] = ()
