"""Events as records: JSON Lines (one object a line) or CSV with a header.

Field names are those of ActivityEvent and of `uba export`'s columns
(event_id, user_id, type, occurred_at, source_ip, ..., session_duration_seconds,
source, attributes), so an export can be imported again. `mapping` renames
input columns first ({"ts": "occurred_at", "user": "user_id"}). Columns that
are not event fields go into `attributes`; `received_at` is output only and
dropped. `type` takes "login_success", "LOGIN_SUCCESS" or the enum name;
times take ISO 8601 with a zone, or Unix seconds. CSV cells that `uba export`
protected against spreadsheet formulas ('=..., '-...) lose the quote again.
The JSON array `uba export --format json` writes (one object a line) reads
as JSON Lines too.

A record without `event_id` gets one hashed from its content (and the
number of identical records before it at the same time), so importing the
same file twice stores nothing twice.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping

from uba.importers import ImportStats, Occurrences, stable_id
from uba.v1 import events_pb2
from uba_client import events as ev

FIELDS = frozenset(
    {
        "event_id",
        "user_id",
        "type",
        "occurred_at",
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
        "session_duration",
        "attributes",
        "source",
    }
)
OUTPUT_ONLY = frozenset({"received_at"})
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def parse_mapping(pairs: Iterable[str]) -> dict[str, str]:
    """'src=dst' pairs (also comma-separated) to a dict; ValueError when malformed."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        for item in filter(None, (p.strip() for p in pair.split(","))):
            src, sep, dst = item.partition("=")
            if not sep or not src.strip() or not dst.strip():
                raise ValueError(f"--map wants SRC=DST, got {item!r}")
            mapping[src.strip()] = dst.strip()
    return mapping


class RecordImporter:
    def __init__(
        self,
        fmt: str,
        source_name: str = "",
        mapping: Mapping[str, str] | None = None,
        source: str = "",
        **_ignored,
    ):
        self.fmt = fmt
        self.source_name = source_name
        self.mapping = dict(mapping or {})
        self.source = source  # default for records without a `source`
        self.stats = ImportStats()
        self.extra_columns: set[str] = set()  # columns that went into attributes
        self._occurrences = Occurrences()

    def state(self) -> dict:
        """Resumable state (see `uba ingest --follow`)."""
        return {"occurrences": self._occurrences.state()}

    def restore(self, state: dict) -> None:
        self._occurrences.restore(state.get("occurrences") or {})

    def parse(self, lines: Iterable[str]) -> Iterator[events_pb2.ActivityEvent]:
        records = self._csv(lines) if self.fmt == "csv" else self._jsonl(lines)
        for no, record in records:
            self.stats.lines += 1
            if record is None:
                continue
            try:
                event = self._event(record)
            except (ValueError, TypeError, OverflowError) as exc:
                self.stats.unparsable(
                    no, str(exc), json.dumps(record, ensure_ascii=False, default=str)
                )
                continue
            self.stats.events += 1
            self.stats.by_type[ev.type_name(event.type)] += 1
            yield event

    # -- reading --------------------------------------------------------------

    def _jsonl(self, lines: Iterable[str]) -> Iterator[tuple[int, dict | None]]:
        for no, raw in enumerate(lines, start=1):
            text = raw.strip()
            if text in ("", "[", "]", "[]"):  # blank, or the brackets of an exported JSON array
                self.stats.ignored += 1
                yield no, None
                continue
            try:
                record = json.loads(text.removesuffix(","))
            except json.JSONDecodeError as exc:
                self.stats.unparsable(no, f"not JSON: {exc.msg}", text)
                yield no, None
                continue
            if not isinstance(record, dict):
                self.stats.unparsable(no, "not a JSON object", text)
                yield no, None
                continue
            yield no, record

    def _csv(self, lines: Iterable[str]) -> Iterator[tuple[int, dict | None]]:
        reader = csv.DictReader(lines)
        for row in reader:
            if None in row:  # more cells than the header has columns
                self.stats.unparsable(
                    reader.line_num,
                    "more cells than header columns",
                    ",".join(str(v) for v in row.values()),
                )
                yield reader.line_num, None
                continue
            yield reader.line_num, {k: _unquote(v) for k, v in row.items() if v not in (None, "")}

    # -- converting -----------------------------------------------------------

    def _event(self, raw: dict) -> events_pb2.ActivityEvent:
        record: dict = {}
        attributes: dict[str, str] = {}
        for key, value in raw.items():
            name = self.mapping.get(key, key)
            if name == "session_duration_seconds":
                name = "session_duration"
            if name in OUTPUT_ONLY or value is None or value == "":
                continue
            if name in FIELDS:
                record[name] = value
            else:
                self.extra_columns.add(name)
                attributes[name] = value if isinstance(value, str) else json.dumps(value)
        if "attributes" in record:
            given = record.pop("attributes")
            if isinstance(given, str):
                given = json.loads(given)
            if not isinstance(given, dict):
                raise ValueError("attributes: not a JSON object")
            attributes = {**attributes, **{str(k): str(v) for k, v in given.items()}}
        for name in ("user_id", "type", "occurred_at"):
            if name not in record:
                raise ValueError(f"{name}: missing")
        for name in ("status_code", "bytes_transferred"):
            if name in record:
                record[name] = int(float(record[name]))
        if "session_duration" in record and isinstance(record["session_duration"], str):
            record["session_duration"] = float(record["session_duration"].removesuffix("s"))
        if self.source and "source" not in record:
            record["source"] = self.source
        user_id, kind, occurred_at = (
            str(record.pop("user_id")),
            record.pop("type"),
            record.pop("occurred_at"),
        )
        event = ev.event(
            user_id,
            kind,
            occurred_at,
            attributes=attributes or None,
            **{
                k: (
                    v
                    if k
                    in (
                        "latitude",
                        "longitude",
                        "status_code",
                        "bytes_transferred",
                        "session_duration",
                    )
                    else str(v)
                )
                for k, v in record.items()
            },
        )
        if not event.event_id:
            canonical = event.SerializeToString(deterministic=True)
            stamp = (event.occurred_at.seconds, event.occurred_at.nanos)
            event.event_id = stable_id(
                "rec", canonical.hex(), self._occurrences.next(stamp, canonical.hex())
            )
        return event


def _unquote(value: str | None) -> str | None:
    """Undoes the export's formula guard: "'=x" back to "=x"."""
    if value and len(value) > 1 and value[0] == "'" and value[1] in _FORMULA_START:
        return value[1:]
    return value
