"""The activity log: filtered pages and streamed exports."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Protocol

from uba.domain import paging
from uba.domain.errors import InvalidArgument
from uba.domain.events import EXPORT_FIELDS, ActivityEvent, EventFilter

EXPORT_FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
}
EXPORT_CHUNK_BYTES = 64 * 1024
EXPORT_PAGE_ROWS = 2000

# Cells a spreadsheet would run as a formula when they start with these.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Columns whose text comes from callers (numbers are safe as they are).
_TEXT_COLUMNS = frozenset(EXPORT_FIELDS) - {
    "occurred_at", "received_at", "latitude", "longitude", "status_code",
    "bytes_transferred", "session_duration_seconds",
}


class EventReader(Protocol):
    """What the log needs from storage. Positions are opaque int lists."""

    def page_events(self, flt: EventFilter, limit: int, after: list[int] | None,
                    newest_first: bool) -> list[tuple[list[int], ActivityEvent]]: ...


@dataclass(frozen=True, slots=True)
class Page:
    events: list[ActivityEvent]
    next_page_token: str


class LogService:
    def __init__(self, reader: EventReader):
        self._reader = reader

    def list(self, flt: EventFilter, requested_size: int, token: str) -> Page:
        """One page of events, newest first."""
        _check_filter(flt)
        size = paging.page_size(requested_size)
        filters = _filter_key(flt)
        after = paging.decode(token, filters, 2)
        # One row more than asked tells whether a next page exists.
        rows = self._reader.page_events(flt, size + 1, after, newest_first=True)
        next_token = paging.encode(rows[size - 1][0], filters) if len(rows) > size else ""
        return Page([e for _, e in rows[:size]], next_token)

    def export(self, flt: EventFilter, fmt: str) -> tuple[str, Iterator[bytes]]:
        """The content type and the chunks of the export, oldest first.
        Reads page by page, so memory stays bounded whatever the size."""
        _check_filter(flt)
        fmt = (fmt or "csv").lower()
        if fmt not in EXPORT_FORMATS:
            raise InvalidArgument.single("format", f"unknown format {fmt[:20]!r}; use csv, json or ndjson")
        return EXPORT_FORMATS[fmt], _chunks(self._rows(flt), fmt)

    def _rows(self, flt: EventFilter) -> Iterator[ActivityEvent]:
        for page in event_pages(self._reader, flt, EXPORT_PAGE_ROWS):
            yield from page


def event_pages(reader: EventReader, flt: EventFilter, size: int) -> Iterator[list[ActivityEvent]]:
    """The selected events oldest first, a page (keyset query) at a time:
    bounded memory and no long-running transaction, whatever the size."""
    after = None
    while True:
        rows = reader.page_events(flt, size, after, newest_first=False)
        if rows:
            yield [event for _, event in rows]
        if len(rows) < size:
            return
        after = rows[-1][0]


def _check_filter(flt: EventFilter) -> None:
    if flt.start_time and flt.end_time and flt.end_time <= flt.start_time:
        raise InvalidArgument.single("end_time", "must be after start_time")


def _filter_key(flt: EventFilter) -> dict:
    key = asdict(flt)
    key["type"] = flt.type.value if flt.type else ""
    return key


def export_record(e: ActivityEvent) -> dict:
    """One event as a flat record with the export columns."""
    return {
        "event_id": e.event_id,
        "user_id": e.user_id,
        "type": e.type.value,
        "occurred_at": _iso(e.occurred_at),
        "received_at": _iso(e.received_at),
        "source_ip": e.source_ip,
        "user_agent": e.user_agent,
        "device_id": e.device_id,
        "session_id": e.session_id,
        "country_code": e.country_code,
        "city": e.city,
        "latitude": e.latitude,
        "longitude": e.longitude,
        "timezone": e.timezone,
        "peer_group": e.peer_group,
        "api_method": e.api_method,
        "api_path": e.api_path,
        "status_code": e.status_code,
        "bytes_transferred": e.bytes_transferred,
        "session_duration_seconds": None if e.session_duration is None else e.session_duration.total_seconds(),
        "source": e.source,
        "attributes": e.attributes,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def csv_safe(value: object) -> object:
    """Neutralises spreadsheet formulas in caller-controlled text."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv_cells(record: dict) -> list:
    cells = []
    for name in EXPORT_FIELDS:
        value = record[name]
        if name == "attributes":
            value = json.dumps(value, ensure_ascii=False, sort_keys=True) if value else ""
        elif value is None:
            value = ""
        cells.append(csv_safe(value) if name in _TEXT_COLUMNS else value)
    return cells


def _chunks(events: Iterator[ActivityEvent], fmt: str) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(EXPORT_FIELDS)
    elif fmt == "json":
        buffer.write("[")
    first = True
    for event in events:
        record = export_record(event)
        if writer is not None:
            writer.writerow(_csv_cells(record))
        elif fmt == "json":
            buffer.write("\n" if first else ",\n")
            buffer.write(json.dumps(record, ensure_ascii=False))
        else:
            buffer.write(json.dumps(record, ensure_ascii=False))
            buffer.write("\n")
        first = False
        if buffer.tell() >= EXPORT_CHUNK_BYTES:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    if fmt == "json":
        buffer.write("\n]\n" if not first else "]\n")
    if buffer.tell():
        yield buffer.getvalue().encode()

