"""ArcSight Common Event Format (CEF:0) lines, and their RFC 5424 syslog
frame with RFC 6587 octet counting for TCP.

    CEF:0|uba|uba|<version>|<signature id>|<name>|<severity>|<extension>

The signature id is the alert's detector (`incident:user`,
`incident:source_address` for incidents, `test` for a test message); the
name is the title; the severity 0-10. Extension keys are CEF's own
dictionary names; docs/integrations.md has the table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from uba.delivery import envelope as env
from uba.delivery.formats.options import DEFAULT, RenderOptions

CONTENT_TYPE = "text/plain; charset=utf-8"
VENDOR = "uba"
PRODUCT = "uba"

# uba severity -> CEF 0-10 (ArcSight reads 0-3 Low, 4-6 Medium, 7-8 High,
# 9-10 Very High); a test message is 0.
SEVERITY = {"LOW": 3, "MEDIUM": 5, "HIGH": 8, "CRITICAL": 10}

# uba severity -> syslog severity (RFC 5424: 2 Critical, 3 Error, 4 Warning,
# 5 Notice, 6 Informational).
SYSLOG_SEVERITY = {"CRITICAL": 2, "HIGH": 3, "MEDIUM": 4, "LOW": 5}
SYSLOG_INFO = 6
# Facility 10, security/authorization (authpriv): what user-account alerts
# are; a receiver that wants another sets it per destination.
FACILITY_AUTHPRIV = 10

# CEF's documented value limits (msg 1023, cs* 4000 characters).
MSG_LIMIT = 1023
CUSTOM_STRING_LIMIT = 4000

_KEY = re.compile(r"^[A-Za-z0-9_]+$")


# -- escaping ---------------------------------------------------------------------


def escape_header(value: object) -> str:
    """A header field: backslash and pipe escaped; line breaks, which the
    header may not hold, become spaces."""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def escape_value(value: object) -> str:
    """An extension value: backslash, equals sign, newline and carriage
    return escaped (a pipe needs none there)."""
    return (
        str(value)
        .replace("\\", "\\\\")
        .replace("=", "\\=")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


def extension(pairs: Iterable[tuple[str, object]]) -> str:
    """`key=value` pairs, space-separated. A value's trailing spaces are
    dropped (CEF cannot escape a space, and a parser cannot tell them from
    the separator); pairs left without a value are left out (CEF has no
    null)."""
    parts = []
    for key, value in pairs:
        if not _KEY.match(key):
            raise ValueError(f"not a CEF extension key: {key!r}")
        text = "" if value is None else escape_value(value).rstrip(" ")
        if text:
            parts.append(f"{key}={text}")
    return " ".join(parts)


def line(
    signature_id: str,
    name: str,
    severity: int,
    pairs: Iterable[tuple[str, object]],
    *,
    version: str,
) -> str:
    """One CEF:0 line from its parts."""
    if not 0 <= severity <= 10:
        raise ValueError(f"CEF severity out of 0-10: {severity}")
    header = [VENDOR, PRODUCT, version, signature_id, name, str(severity)]
    return "CEF:0|" + "|".join(escape_header(h) for h in header) + "|" + extension(pairs)


# -- the format ---------------------------------------------------------------------


def render(envelope: env.Envelope, options: RenderOptions = DEFAULT) -> bytes:
    return cef_line(envelope, options).encode()


def cef_line(envelope: env.Envelope, options: RenderOptions = DEFAULT) -> str:
    what = env.validate(envelope)
    changed = env.millis(env.parse_time(envelope["timestamp"]))
    if what == "test":
        text = env.message(envelope) or "uba test notification"
        pairs: list[tuple[str, object]] = [
            ("rt", changed),
            ("act", env.TEST),
            ("cat", "test"),
            ("externalId", envelope["id"]),
            ("msg", _cut(text, MSG_LIMIT)),
            ("flexString1Label", "messageId"),
            ("flexString1", envelope["id"]),
        ]
        return line("test", "uba test notification", 0, pairs, version=options.version)
    item = env.subject(envelope)
    sev = env.severity(item)
    if what == "alert":
        signature = str(item.get("detector", "")) or "alert"
        message = str(item.get("reason", ""))
        users = [str(item["userId"])] if item.get("userId") else []
        risk_label, risk = "userRisk", env.integer(item, "userRisk")
        incident_id = str(item.get("incidentId", ""))
        source = ""
        event_ids = [e for a in env.anomalies(envelope) for e in env.strings(a, "eventIds")]
    else:
        signature = f"incident:{env.entity_kind(item).lower() or 'unknown'}"
        message = "; ".join(
            f"{s.get('title') or s.get('detector', '')} ({env.severity(s)})"
            for s in item.get("signals") or []
        )
        users = env.strings(item, "userIds")
        risk_label, risk = "incidentScore", round(env.number(item, "score"))
        incident_id = env.subject_id(envelope)
        source = str(item.get("entityId", "")) if env.entity_kind(item) == "SOURCE_ADDRESS" else ""
        event_ids = []
    first, last = env.time_field(item, "firstSeenAt"), env.time_field(item, "lastSeenAt")
    status = env.status(item).lower()
    pairs = [
        ("rt", changed),
        ("start", _ms(first)),
        ("end", _ms(last)),
        ("act", envelope["type"]),
        ("cat", what),
        ("externalId", env.subject_id(envelope)),
        ("duser", users[0] if len(users) == 1 else ""),
        ("src", source),
        ("msg", _cut(message, MSG_LIMIT)),
        ("outcome", env.resolution(item).lower()),
        ("cnt", env.integer(item, "anomalyCount")),
        ("cs1Label", "tactics"),
        ("cs1", _cut(_attack_text(env.attack_pairs(item, "tactics", "tacticId")), 4000)),
        ("cs2Label", "techniques"),
        ("cs2", _cut(_attack_text(env.attack_pairs(item, "techniques", "techniqueId")), 4000)),
        ("cs3Label", "incidentId"),
        ("cs3", incident_id),
        ("cs4Label", "users" if len(users) > 1 else ""),
        ("cs4", _cut(",".join(users), CUSTOM_STRING_LIMIT) if len(users) > 1 else ""),
        ("cs5Label", "status"),
        ("cs5", status),
        ("cs6Label", "eventIds" if event_ids else ""),
        ("cs6", _cut(",".join(event_ids), CUSTOM_STRING_LIMIT)),
        ("cn1Label", risk_label),
        ("cn1", risk),
        ("cn2Label", "seq"),
        ("cn2", env.integer(item, "seq")),
        ("flexString1Label", "messageId"),
        ("flexString1", envelope["id"]),
    ]
    return line(
        signature,
        str(item.get("title", "")) or signature,
        SEVERITY.get(sev, 0),
        [(k, v) for k, v in pairs if not _label_without_value(k, pairs)],
        version=options.version,
    )


def _label_without_value(key: str, pairs: list[tuple[str, object]]) -> bool:
    """A csN/cnN/flexStringN label is left out when its value is."""
    if not key.endswith("Label"):
        return False
    value = dict(pairs).get(key[: -len("Label")])
    return value is None or value == ""


def _attack_text(pairs: list[tuple[str, str]]) -> str:
    """ "TA0001 Initial Access,TA0003 Persistence"."""
    return ",".join(f"{i} {n}".strip() for i, n in pairs)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ms(moment: datetime | None) -> int | None:
    return env.millis(moment) if moment is not None else None


# -- syslog -----------------------------------------------------------------------------


def syslog_severity(envelope: env.Envelope) -> int:
    if env.kind(envelope) == "test":
        return SYSLOG_INFO
    return SYSLOG_SEVERITY.get(env.severity(env.subject(envelope)), SYSLOG_INFO)


def syslog_message(
    msg: str | bytes,
    *,
    hostname: str,
    severity: int,
    facility: int = FACILITY_AUTHPRIV,
    app_name: str = "uba",
    procid: str = "-",
    msgid: str = "-",
    timestamp: datetime | None = None,
) -> bytes:
    """An RFC 5424 message, unframed (as one UDP datagram carries it):
    `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`. MSG goes without
    a BOM: CEF receivers read the bytes as they come."""
    if not 0 <= facility <= 23 or not 0 <= severity <= 7:
        raise ValueError(f"syslog facility {facility} or severity {severity} out of range")
    moment = (timestamp or datetime.now(UTC)).astimezone(UTC)
    header = " ".join(
        [
            f"<{facility * 8 + severity}>1",
            moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            _header_field(hostname, 255),
            _header_field(app_name, 48),
            _header_field(procid, 128),
            _header_field(msgid, 32),
            "-",
        ]
    )
    body = msg.encode() if isinstance(msg, str) else msg
    return header.encode("ascii") + b" " + body


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 octet-counting framing for TCP: `MSG-LEN SP SYSLOG-MSG`."""
    return str(len(message)).encode("ascii") + b" " + message


def syslog_frame(
    cef: str | bytes,
    hostname: str,
    app_name: str = "uba",
    *,
    severity: int = SYSLOG_INFO,
    facility: int = FACILITY_AUTHPRIV,
    procid: str = "-",
    msgid: str = "-",
    timestamp: datetime | None = None,
) -> bytes:
    """A CEF line as one RFC 5424 message with octet-counting framing, ready
    for a TCP (or TLS) syslog stream."""
    return octet_counted(
        syslog_message(
            cef,
            hostname=hostname,
            severity=severity,
            facility=facility,
            app_name=app_name,
            procid=procid,
            msgid=msgid,
            timestamp=timestamp,
        )
    )


def envelope_frame(
    envelope: env.Envelope,
    hostname: str,
    options: RenderOptions = DEFAULT,
    *,
    facility: int = FACILITY_AUTHPRIV,
    procid: str = "-",
) -> bytes:
    """The envelope's CEF line in its syslog frame: severity from the uba
    severity, MSGID the envelope type, TIMESTAMP the change's time."""
    return syslog_frame(
        cef_line(envelope, options),
        hostname,
        severity=syslog_severity(envelope),
        facility=facility,
        procid=procid,
        msgid=str(envelope["type"]),
        timestamp=env.parse_time(envelope["timestamp"]),
    )


def _header_field(value: str, limit: int) -> str:
    """RFC 5424 header fields are 1..limit printable US-ASCII characters
    without spaces; "-" is the nil value."""
    cleaned = "".join(c if 33 <= ord(c) <= 126 else "_" for c in str(value))[:limit]
    return cleaned or "-"
