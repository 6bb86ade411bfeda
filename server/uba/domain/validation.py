"""Validation of incoming events. Every rule names the field it checks, so a
caller learns exactly what to fix."""

from __future__ import annotations

import ipaddress
import operator
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from uba.domain.events import ActivityEvent, FieldViolation

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_SESSION = timedelta(days=31)
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_KEY = 64
MAX_ATTRIBUTE_VALUE = 1024

# Longest accepted value of each text field (also the column sizes).
MAX_LENGTHS = {
    "event_id": 128,
    "user_id": 256,
    "source_ip": 64,
    "user_agent": 1024,
    "device_id": 256,
    "session_id": 256,
    "country_code": 2,
    "city": 128,
    "timezone": 64,
    "peer_group": 128,
    "api_method": 16,
    "api_path": 2048,
    "source": 128,
}

# Free text: what people and programs write (a browser's user agent, a
# city). Every other text field is an identifier: it names something, is
# compared, grouped and printed in tables, so it must read as what it is.
FREE_TEXT_FIELDS = frozenset({"user_agent", "city"})

_TEXT_FIELDS = tuple(MAX_LENGTHS)
_TEXT_LIMITS = tuple(MAX_LENGTHS.values())
_text_values = operator.attrgetter(*_TEXT_FIELDS)

# Refused in every text field: control characters (C0 with LF and CR, DEL,
# C1 with NEL) and lone surrogates, which no encoder accepts. Free text
# keeps TAB: HTTP allows it inside a header value, so a faithfully copied
# user agent may hold one (tables and exports escape it).
FREE_TEXT_REFUSED = frozenset({"Cc", "Cs"})
FREE_TEXT_ALLOWED = frozenset("\t")
# Refused in identifiers besides: TAB, format characters (bidirectional
# overrides, zero-width characters) and the line and paragraph separators
# U+2028 and U+2029, which reorder, hide or break what a table shows.
IDENTIFIER_REFUSED = FREE_TEXT_REFUSED | {"Cf", "Zl", "Zp"}


def first_refused(
    value: str, refused: frozenset[str], allowed: frozenset[str] = frozenset()
) -> str | None:
    """The first character of `value` in one of the `refused` Unicode
    categories and not `allowed`, or None. str.isprintable() is false for
    all of them (and for a few more, such as a no-break space), so the
    usual value costs one scan at C speed."""
    if value.isprintable():
        return None
    for char in value:
        if char not in allowed and unicodedata.category(char) in refused:
            return char
    return None


def _free_text_refused(value: str) -> str | None:
    return first_refused(value, FREE_TEXT_REFUSED, FREE_TEXT_ALLOWED)


def _identifier_refused(value: str) -> str | None:
    return first_refused(value, IDENTIFIER_REFUSED)


def _refusal(char: str, identifier: bool) -> str:
    what = (
        "control, format or line separator characters"
        if identifier
        else "control characters but TAB"
    )
    return f"must not contain {what} (found U+{ord(char):04X})"


_COUNTRY = re.compile(r"[A-Z]{2}")
_EVENT_ID = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces


@lru_cache(maxsize=1024)
def is_time_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return False
    return True


@lru_cache(maxsize=4096)
def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def validate_event(event: ActivityEvent, prefix: str, now: datetime) -> list[FieldViolation]:
    """All the problems of one event; an empty list means it is valid.

    `prefix` is the event's path in the request, e.g. "event" or "events[3]".
    A missing `event_id` is fine: the server assigns one.
    """
    problems: list[FieldViolation] = []

    def bad(name: str, why: str) -> None:
        problems.append(FieldViolation(f"{prefix}.{name}", why))

    if not event.user_id:
        bad("user_id", "required")
    if event.type is None:
        bad("type", "required: one of the ActivityType values other than ACTIVITY_TYPE_UNSPECIFIED")
    if event.occurred_at is None:
        bad("occurred_at", "required")
    elif event.occurred_at < EARLIEST:
        bad("occurred_at", "before 2000-01-01")
    elif event.occurred_at > now + MAX_CLOCK_SKEW:
        bad("occurred_at", "more than 5 minutes in the future")

    # One scan of all text fields for the usual case (ingest's hot path);
    # field by field only to name what is wrong.
    texts = _text_values(event)
    if any(map(operator.gt, map(len, texts), _TEXT_LIMITS)) or not "".join(texts).isprintable():
        for name, limit, value in zip(_TEXT_FIELDS, _TEXT_LIMITS, texts, strict=True):
            identifier = name not in FREE_TEXT_FIELDS
            if len(value) > limit:
                bad(name, f"longer than {limit} characters")
            elif (
                char := (_identifier_refused if identifier else _free_text_refused)(value)
            ) is not None:
                bad(name, _refusal(char, identifier))
    if (
        event.event_id
        and len(event.event_id) <= MAX_LENGTHS["event_id"]
        and not _EVENT_ID.fullmatch(event.event_id)
    ):
        bad("event_id", "must be printable ASCII without spaces")
    if (
        event.source_ip
        and len(event.source_ip) <= MAX_LENGTHS["source_ip"]
        and not is_ip(event.source_ip)
    ):
        bad("source_ip", "not an IPv4 or IPv6 address")
    if event.country_code and not _COUNTRY.fullmatch(event.country_code):
        bad("country_code", "must be an ISO 3166-1 alpha-2 code in capitals, e.g. DE")
    if (
        event.timezone
        and len(event.timezone) <= MAX_LENGTHS["timezone"]
        and not is_time_zone(event.timezone)
    ):
        bad("timezone", "not an IANA time zone name, e.g. Europe/Berlin")
    if event.latitude is not None and not -90.0 <= event.latitude <= 90.0:
        bad("latitude", "must be within -90..90")
    if event.longitude is not None and not -180.0 <= event.longitude <= 180.0:
        bad("longitude", "must be within -180..180")
    if (event.latitude is None) != (event.longitude is None):
        bad(
            "latitude" if event.latitude is None else "longitude",
            "latitude and longitude go together",
        )
    if not 0 <= event.status_code <= 999:
        bad("status_code", "must be within 0..999")
    if event.bytes_transferred < 0:
        bad("bytes_transferred", "must not be negative")
    if (
        event.session_duration is not None
        and not timedelta(0) <= event.session_duration <= MAX_SESSION
    ):
        bad("session_duration", "must be within 0..31 days")

    if len(event.attributes) > MAX_ATTRIBUTES:
        bad("attributes", f"more than {MAX_ATTRIBUTES} entries")
    else:
        for key, value in event.attributes.items():
            # Keys are identifiers, values free text.
            if not key or len(key) > MAX_ATTRIBUTE_KEY or _identifier_refused(key):
                bad(
                    "attributes",
                    f"key {key[:64]!r}: 1..{MAX_ATTRIBUTE_KEY} characters without control, "
                    "format or line separator characters",
                )
            elif len(value) > MAX_ATTRIBUTE_VALUE:
                bad(f"attributes[{key}]", f"longer than {MAX_ATTRIBUTE_VALUE} characters")
            elif (char := _free_text_refused(value)) is not None:
                bad(f"attributes[{key}]", _refusal(char, identifier=False))
    return problems
