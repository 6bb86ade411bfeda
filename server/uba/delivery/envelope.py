"""The notification envelope: what every payload format starts from.

A plain dict, built from the API's JSON mapping of the changed alert or
incident (`google.protobuf.json_format.MessageToDict`: lowerCamelCase field
names, enums by name, RFC 3339 timestamps, int64 values as strings, and
fields at their default value left out)::

    {"id": "<UUIDv7: the message id, receivers' idempotency key>",
     "type": "alert.created" | "alert.updated" | "incident.created"
             | "incident.updated" | "test",
     "timestamp": "<RFC 3339 UTC of the change>",
     "data": {"alert": {...}, "anomalies": [{...}, ...]}
          or {"incident": {...}}
          or {"message": "..."}}

The accessors below read it the way every format needs it: a missing field
reads as its default, as the JSON mapping leaves defaults out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypedDict

from uba.domain.ids import new_uuid7
from uba.domain.notifications import (
    ALERT_CREATED,
    ALERT_UPDATED,
    INCIDENT_CREATED,
    INCIDENT_UPDATED,
    TEST,
)

TYPES = frozenset({ALERT_CREATED, ALERT_UPDATED, INCIDENT_CREATED, INCIDENT_UPDATED, TEST})

Kind = Literal["alert", "incident", "test"]
Envelope = Mapping[str, Any]

# The uba severities by their wire names, lowest first; "" is unspecified
# (the JSON mapping leaves SEVERITY_UNSPECIFIED out).
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")


class EnvelopeDict(TypedDict):
    id: str
    type: str
    timestamp: str
    data: dict[str, Any]


class EnvelopeError(ValueError):
    """An envelope that no format can render (a bug of its builder)."""


def make(
    type: str, data: dict[str, Any], *, id: str = "", timestamp: datetime | None = None
) -> EnvelopeDict:
    """A new envelope; a new UUIDv7 id and the current time unless given."""
    if type not in TYPES:
        raise EnvelopeError(f"unknown envelope type {type!r}")
    moment = timestamp if timestamp is not None else datetime.now(UTC)
    return {"id": id or new_uuid7(), "type": type, "timestamp": format_time(moment), "data": data}


def alert_envelope(
    alert: dict[str, Any],
    anomalies: list[dict[str, Any]] | None = None,
    *,
    created: bool,
    id: str = "",
    timestamp: datetime | None = None,
) -> EnvelopeDict:
    """The envelope of an alert's change, from the alert's JSON mapping and
    those of the anomalies that changed it."""
    type = ALERT_CREATED if created else ALERT_UPDATED
    data = {"alert": alert, "anomalies": list(anomalies or [])}
    return make(type, data, id=id, timestamp=timestamp)


def incident_envelope(
    incident: dict[str, Any], *, created: bool, id: str = "", timestamp: datetime | None = None
) -> EnvelopeDict:
    type = INCIDENT_CREATED if created else INCIDENT_UPDATED
    return make(type, {"incident": incident}, id=id, timestamp=timestamp)


def test_envelope(
    message: str = "uba test notification", *, id: str = "", timestamp: datetime | None = None
) -> EnvelopeDict:
    """What "send a test" delivers: no alert, just proof the route works."""
    return make(TEST, {"message": message}, id=id, timestamp=timestamp)


test_envelope.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def validate(envelope: Envelope) -> Kind:
    """The envelope's kind, after checking the parts every format relies on."""
    for key in ("id", "type", "timestamp", "data"):
        if key not in envelope:
            raise EnvelopeError(f"envelope without {key!r}")
    if envelope["type"] not in TYPES:
        raise EnvelopeError(f"unknown envelope type {envelope['type']!r}")
    parse_time(envelope["timestamp"])
    what = kind(envelope)
    if what != "test" and not isinstance(envelope["data"].get(what), Mapping):
        raise EnvelopeError(f"a {envelope['type']} envelope without data.{what}")
    return what


def kind(envelope: Envelope) -> Kind:
    type = envelope["type"]
    if type == TEST:
        return "test"
    return "alert" if type.startswith("alert.") else "incident"


def is_created(envelope: Envelope) -> bool:
    return str(envelope["type"]).endswith(".created")


def alert(envelope: Envelope) -> Mapping[str, Any]:
    return envelope["data"].get("alert") or {}


def incident(envelope: Envelope) -> Mapping[str, Any]:
    return envelope["data"].get("incident") or {}


def subject(envelope: Envelope) -> Mapping[str, Any]:
    """The alert or the incident ({} for a test message)."""
    what = kind(envelope)
    return {} if what == "test" else envelope["data"].get(what) or {}


def anomalies(envelope: Envelope) -> list[Mapping[str, Any]]:
    """The anomalies of this change of an alert ([] for anything else)."""
    return list(envelope["data"].get("anomalies") or [])


def message(envelope: Envelope) -> str:
    return str(envelope["data"].get("message", ""))


def subject_id(envelope: Envelope) -> str:
    """The alert id, the incident id, or the message id of a test."""
    what = kind(envelope)
    if what == "test":
        return str(envelope["id"])
    return str(subject(envelope).get(f"{what}Id", ""))


# -- field readers -------------------------------------------------------------


def severity(item: Mapping[str, Any]) -> str:
    """ "LOW" .. "CRITICAL", or "" when unspecified."""
    return enum_suffix(item.get("severity", ""), "SEVERITY_")


def status(item: Mapping[str, Any]) -> str:
    """ "OPEN", "ACKNOWLEDGED", "RESOLVED" (alerts and incidents alike)."""
    value = str(item.get("status", ""))
    for prefix in ("ALERT_STATUS_", "INCIDENT_STATUS_"):
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


def resolution(item: Mapping[str, Any]) -> str:
    """ "TRUE_POSITIVE", "BENIGN", "FALSE_POSITIVE", or "" when not resolved."""
    return enum_suffix(item.get("resolution", ""), "RESOLUTION_")


def entity_kind(incident: Mapping[str, Any]) -> str:
    """ "USER" or "SOURCE_ADDRESS"."""
    return enum_suffix(incident.get("entityKind", ""), "ENTITY_KIND_")


def enum_suffix(value: object, prefix: str) -> str:
    text = str(value or "")
    if text.endswith("_UNSPECIFIED"):
        return ""
    return text[len(prefix) :] if text.startswith(prefix) else text


def integer(item: Mapping[str, Any], key: str) -> int:
    """An integer field: the JSON mapping writes int64 as a string."""
    value = item.get(key, 0)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def number(item: Mapping[str, Any], key: str) -> float:
    value = item.get(key, 0.0)
    try:
        return float(value)  # JSON mapping: "NaN"/"Infinity" as strings too
    except (TypeError, ValueError):
        return 0.0


def strings(item: Mapping[str, Any], key: str) -> list[str]:
    return [str(x) for x in item.get(key) or []]


def attack_pairs(item: Mapping[str, Any], key: str, id_key: str) -> list[tuple[str, str]]:
    """[(id, name)] of `tactics` (id_key "tacticId") or `techniques`
    ("techniqueId")."""
    return [(str(x.get(id_key, "")), str(x.get("name", ""))) for x in item.get(key) or []]


# -- time -----------------------------------------------------------------------


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp as an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        raise EnvelopeError(f"not an RFC 3339 timestamp: {text!r}") from None
    if moment.tzinfo is None:
        raise EnvelopeError(f"timestamp without a UTC offset: {text!r}")
    return moment.astimezone(UTC)


def time_field(item: Mapping[str, Any], key: str) -> datetime | None:
    """A timestamp field, None when absent."""
    value = item.get(key)
    return parse_time(value) if value else None


def millis(moment: datetime) -> int:
    """Milliseconds since the Unix epoch (OCSF timestamp_t, CEF rt)."""
    return (moment - _EPOCH) // _MS


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as the JSON mapping writes it (3 or 6
    fraction digits, none for whole seconds)."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond % 1000:
        text += f".{moment.microsecond:06d}"
    elif moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
