"""Schemathesis hooks of test_openapi_fuzz.py (SCHEMATHESIS_HOOKS): rules
of the API that OpenAPI 2.0 cannot state, taught to the generator so that
every check can run on every operation. Each rule is narrow and says why;
nothing here looks at an answer.

Schema-valid ("positive") cases are repaired where a rule is beyond the
document, so that positive_data_acceptance holds the server to everything
else:

- a JSON member with an empty name is dropped: the transcoder refuses one
  ("Proto fields must have a name") and OpenAPI 2.0 has no `propertyNames`;
- an `end_time` not after `start_time` is dropped: the server refuses an
  empty or reversed window (a rule across two fields);
- an invented `page_token` is dropped: a token is opaque and valid only as
  the server issued it, for the same filters;
- Backfill's `startTime` after now is moved to an hour ago: the server
  refuses a replay from the future (a rule about its clock);
- ForgetUser's `user_id` loses its format characters (Unicode category Cf):
  ingest refuses them in an id, and which characters they are depends on
  the Unicode version, so the document's pattern leaves them out.

Schema-violating ("negative") cases are dropped when they are only another
spelling of a valid request: the transcoder reads proto3 JSON, which takes
`null` for a field's default, enum numbers and names in any case (query
strings too), 64-bit integers as numbers, 32-bit ones and booleans as
strings, a Timestamp or Duration as an object (its message form, here
without `seconds` or `nanos`: zero), a repeated
field as one item or as nested lists (read flat); OpenAPI 2.0
describes one type per value, so the document gives the canonical one. A
case is dropped only when rewriting it canonically changed something and
the result is valid against the document.
"""

from __future__ import annotations

import copy
import json
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import jsonschema
import schemathesis
from schemathesis.core import NOT_SET

from uba.domain.erasure import PSEUDONYM_PREFIX
from uba.gateway.config import OPENAPI_JSON
from uba.v1 import alerts_pb2, anomalies_pb2, events_pb2, incidents_pb2, notifications_pb2

DOCUMENT = json.loads(OPENAPI_JSON.read_text())
RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z"
)
EPOCH = "1970-01-01T00:00:00Z"


# -- the generator's modes ------------------------------------------------------------------------


def _mode(case) -> str:
    meta = case.meta
    return meta.generation.mode.value if meta is not None else ""


@schemathesis.hook
def filter_case(context, case) -> bool:
    if _mode(case) != "negative":
        return True
    return not _another_spelling_of_a_valid_request(case)


@schemathesis.hook
def map_case(context, case):
    if _mode(case) == "positive":
        _repair(case)
    return case


# -- positive cases: the rules the document cannot state ------------------------------------------


def _repair(case) -> None:
    if case.body is not NOT_SET:
        case.body = _without_empty_names(case.body)
    query = case.query or {}
    if query.get("page_token"):
        del query["page_token"]
    _drop_reversed_end(query, "start_time", "end_time")
    if isinstance(case.body, dict):
        _drop_reversed_end(case.body, "startTime", "endTime")
    operation = _operation(case)
    if operation is None:
        return
    operation_id = operation["operationId"].removesuffix("_slash")
    if operation_id == "Backfill" and isinstance(case.body, dict):
        start = _instant(case.body.get("startTime"))
        now = datetime.now(UTC)
        if start is not None and start > now.timestamp():
            case.body["startTime"] = _rfc3339(now - timedelta(hours=1))
            _drop_reversed_end(case.body, "startTime", "endTime")
    if operation_id == "ForgetUser" and isinstance(case.path_parameters, dict):
        user = case.path_parameters.get("user_id")
        if isinstance(user, str):
            user = "".join(c for c in user if unicodedata.category(c) != "Cf") or "someone"
            if user.startswith(PSEUDONYM_PREFIX):
                user = "u" + user[1:]
            case.path_parameters["user_id"] = user


def _without_empty_names(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_empty_names(v) for k, v in value.items() if k != ""}
    if isinstance(value, list):
        return [_without_empty_names(v) for v in value]
    return value


def _drop_reversed_end(container: dict, start_name: str, end_name: str) -> None:
    start, end = _instant(container.get(start_name)), _instant(container.get(end_name))
    if start is not None and end is not None and end <= start:
        del container[end_name]


def _instant(value: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 text (any year, any offset),
    or None when it is not one."""
    match = RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    try:
        days = datetime(year, month, day).toordinal() - datetime(1970, 1, 1).toordinal()
    except ValueError:
        return None
    offset = match.group(8)
    shift = 0
    if offset.upper() != "Z":
        shift = (-1 if offset[0] == "-" else 1) * (int(offset[1:3]) * 60 + int(offset[4:]))
    fraction = float(match.group(7) or 0)
    return days * 86400 + hour * 3600 + minute * 60 + second + fraction - shift * 60


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# -- negative cases: another spelling of a valid request ------------------------------------------


def _operation(case) -> dict | None:
    return DOCUMENT["paths"].get(case.operation.path, {}).get(case.operation.method.lower())


def _another_spelling_of_a_valid_request(case) -> bool:
    operation = _operation(case)
    if operation is None or (case.headers or {}).keys() - {"Authorization"}:
        return False
    if "Authorization" in (case.headers or {}) and not str(
        case.headers["Authorization"]
    ).startswith("Bearer "):
        return False
    spelling = _Canonical()
    parameters = {p["name"]: p for p in operation.get("parameters", [])}
    query: dict[str, Any] = {}
    for name, value in (case.query or {}).items():
        parameter = parameters.get(name)
        if parameter is None or parameter["in"] != "query":
            return False  # the transcoder refuses a parameter it does not know
        wire = _wire(value)
        if wire is None:
            return False
        query[name] = spelling.query_value(wire, parameter)
    path = dict(case.path_parameters or {})
    for name, parameter in parameters.items():
        if parameter["in"] == "path" and not _valid(path.get(name), _parameter_schema(parameter)):
            return False
        if parameter["in"] == "query" and name in query:
            if not _valid(query[name], _parameter_schema(parameter)):
                return False
    (body,) = [p for p in parameters.values() if p["in"] == "body"] or [None]
    if body is not None:
        schema = _resolve(body["schema"])
        if case.body is None:  # JSON null: "Root element must be a message"
            return False
        if case.body is NOT_SET:
            if body.get("required"):
                return False
        else:
            canonical = spelling.value(copy.deepcopy(case.body), schema)
            if canonical is _ABSENT:
                canonical = {}
            if not _valid(canonical, schema):
                return False
    elif case.body is not NOT_SET:
        return False
    return spelling.changed


_ABSENT = object()


class _Canonical:
    """Rewrites proto3 JSON's other spellings into the document's; `changed`
    says whether it rewrote anything."""

    def __init__(self) -> None:
        self.changed = False

    def query_value(self, wire: str, parameter: dict) -> Any:
        if "enum" in parameter:
            name = _enum_name(wire, parameter["enum"])
            if name is not None and name != wire:
                self.changed = True
                return name
            return wire
        if parameter.get("type") == "integer" and re.fullmatch(r"-?\d+", wire):
            return int(wire)
        if parameter.get("type") == "boolean" and wire in ("true", "false"):
            return wire == "true"
        return wire

    def value(self, value: Any, schema: dict) -> Any:
        if value is None:
            self.changed = True
            return _ABSENT
        kind = schema.get("type")
        if "enum" in schema and not isinstance(value, (dict, list)):
            name = _enum_name(value, schema["enum"])
            if name is not None and name != value:
                self.changed = True
                return name
            return value
        if kind == "object" and isinstance(value, dict):
            properties = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            out = {}
            for key, item in value.items():
                sub = properties.get(key, extra if isinstance(extra, dict) else {})
                item = self.value(item, sub)
                if item is not _ABSENT:
                    out[key] = item
            return out
        if kind == "array":
            flat = _flatten(value) if isinstance(value, list) else [value]
            if flat != value:
                self.changed = True
            items = [self.value(item, schema.get("items", {})) for item in flat]
            return [item for item in items if item is not _ABSENT]
        if kind == "string" and isinstance(value, dict) and not {"seconds", "nanos"} & set(value):
            # The message form of a Timestamp or Duration; members it does
            # not have are ignored like any unknown field.
            if schema.get("format") == "date-time":
                self.changed = True
                return EPOCH
            if str(schema.get("pattern", "")).endswith(")s$"):  # a Duration
                self.changed = True
                return "0s"
        if kind == "string" and schema.get("format") in ("int64", "uint64"):
            if isinstance(value, int) and not isinstance(value, bool):
                self.changed = True
                return str(value)
        if kind == "integer" and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            self.changed = True
            return int(value)
        if kind == "number" and isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return value
            if number == number and abs(number) != float("inf"):
                self.changed = True
                return number
        if kind == "boolean" and value in ("true", "false"):
            self.changed = True
            return value == "true"
        return value


def _flatten(items: list) -> list:
    flat: list = []
    for item in items:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


@cache
def _enum_numbers() -> dict[frozenset[str], dict[int, str]]:
    """The document's enums by their names -> number -> name."""
    found = {}
    for module in (alerts_pb2, anomalies_pb2, events_pb2, incidents_pb2, notifications_pb2):
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            found[frozenset(v.name for v in enum.values)] = {v.number: v.name for v in enum.values}
    return found


def _enum_name(value: Any, names: list) -> str | None:
    """The canonical name of an enum value spelt as a number or in another
    case, or None when it is neither."""
    numbers = _enum_numbers().get(frozenset(names))
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"-?\d+", value)):
        return numbers.get(int(value)) if numbers else None
    if isinstance(value, str):
        upper = value.upper()
        return upper if upper in names else None
    return None


def _wire(value: Any) -> str | None:
    """A query value as sent (one value only), or None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return str(value)
    return None


def _parameter_schema(parameter: dict) -> dict:
    keys = ("type", "format", "enum", "pattern", "minimum", "maximum", "minLength", "maxLength")
    return {k: parameter[k] for k in keys if k in parameter}


def _resolve(schema: Any, seen: frozenset[str] = frozenset()) -> Any:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if ref is not None:
            name = ref.rsplit("/", 1)[-1]
            if name in seen:
                return {}
            return _resolve(DOCUMENT["definitions"][name], seen | {name})
        return {k: _resolve(v, seen) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_resolve(v, seen) for v in schema]
    return schema


FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or _instant(value) is not None


@FORMATS.checks("int32")
def _is_int32(value: object) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


def _valid(value: Any, schema: dict) -> bool:
    if value is None:
        return True
    return jsonschema.Draft4Validator(schema, format_checker=FORMATS).is_valid(value)
