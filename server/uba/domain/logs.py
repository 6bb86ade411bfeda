"""The activity log: filtered pages and streamed exports."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from itertools import repeat
from typing import Protocol, cast

from uba.domain import paging
from uba.domain.errors import InvalidArgument
from uba.domain.events import EXPORT_FIELDS, EXPORT_ROW, ActivityEvent, EventFilter

EXPORT_FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
}
# At most this many bytes per streamed message. Each message costs a hop to
# the storage thread and a gRPC write: at 64 KB that was about 4 ms of CPU
# per MB sent, at 256 KB about 3 ms (well under gRPC's 4 MB message limit).
EXPORT_CHUNK_BYTES = 256 * 1024
# Rows per keyset page: one short read each, so memory stays bounded.
EXPORT_PAGE_ROWS = 2000

# Cells a spreadsheet would run as a formula when they start with these.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Columns whose text comes from callers (numbers are safe as they are).
_TEXT_COLUMNS = frozenset(EXPORT_FIELDS) - {
    "occurred_at",
    "received_at",
    "latitude",
    "longitude",
    "status_code",
    "bytes_transferred",
    "session_duration_seconds",
}


class EventReader(Protocol):
    """What the log needs from storage. Positions are opaque int lists."""

    def page_events(
        self, flt: EventFilter, limit: int, after: list[int] | None, newest_first: bool
    ) -> list[tuple[list[int], ActivityEvent]]: ...

    def export_page(
        self, flt: EventFilter, limit: int, after: list[int] | None
    ) -> tuple[Sequence[Sequence], list[int] | None]:
        """Up to `limit` selected events oldest first, after the position,
        as stored rows whose first fields are EXPORT_ROW (storage may add
        its own after them), and the position of the last one."""
        ...


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
            raise InvalidArgument.single(
                "format", f"unknown format {fmt[:20]!r}; use csv, json or ndjson"
            )
        return EXPORT_FORMATS[fmt], _chunks(self._export_pages(flt), fmt)

    def _export_pages(self, flt: EventFilter) -> Iterator[Sequence[Sequence]]:
        """Stored rows (EXPORT_ROW), oldest first, a keyset page at a time."""
        return _keyset_pages(
            lambda after: self._reader.export_page(flt, EXPORT_PAGE_ROWS, after), EXPORT_PAGE_ROWS
        )


def event_pages(reader: EventReader, flt: EventFilter, size: int) -> Iterator[list[ActivityEvent]]:
    """The selected events oldest first, a page (keyset query) at a time."""

    def fetch(after):
        rows = reader.page_events(flt, size, after, newest_first=False)
        return [event for _, event in rows], (rows[-1][0] if rows else None)

    return _keyset_pages(fetch, size)


def _keyset_pages(fetch, size: int) -> Iterator[list]:
    """Pages from `fetch(after) -> (items, next position)` until a short
    one: bounded memory and no long-running transaction, whatever the size."""
    after = None
    while True:
        items, after = fetch(after)
        if items:
            yield items
        if len(items) < size:
            return


def _check_filter(flt: EventFilter) -> None:
    if flt.start_time and flt.end_time and flt.end_time <= flt.start_time:
        raise InvalidArgument.single("end_time", "must be after start_time")


def _filter_key(flt: EventFilter) -> dict:
    key = asdict(flt)
    key["type"] = flt.type.value if flt.type else ""
    return key


def csv_safe(value: object) -> object:
    """Neutralises spreadsheet formulas in caller-controlled text."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


# -- the export's formatting ---------------------------------------------------
# A page of stored rows (EXPORT_ROW) is formatted column by column: each
# column is checked once at C speed (the formula and quoting check of a
# whole text column is one join and a few character scans) and converted
# only when it needs it; a column empty throughout becomes a constant. Then
# each line is one str.join of its cells (CSV), or of its cells between the
# constant text around them (JSON). No per-row object is built but the
# line. The output is byte for byte what csv.writer (QUOTE_MINIMAL, CRLF)
# and json.dumps(record, ensure_ascii=False) wrote for the record, except
# that JSON text escapes U+2028, U+2029 and U+0085 as well (see _json_text).

_COLUMN = {name: i for i, name in enumerate(EXPORT_FIELDS)}
_TEXT = frozenset(_COLUMN[name] for name in _TEXT_COLUMNS - {"attributes"})
_TIMES = frozenset((_COLUMN["occurred_at"], _COLUMN["received_at"]))
_NUMBERS = frozenset(
    _COLUMN[name] for name in ("latitude", "longitude", "status_code", "bytes_transferred")
)
_DURATION = _COLUMN["session_duration_seconds"]
_ATTRIBUTES = _COLUMN["attributes"]
assert EXPORT_ROW[_DURATION] == "session_duration_us" and len(EXPORT_ROW) == len(EXPORT_FIELDS)

# What csv.writer quotes a cell for.
_CSV_QUOTED = (",", '"', "\r", "\n")
_json_str = json.encoder.encode_basestring  # json.dumps(text, ensure_ascii=False)
# Line and paragraph separators (and NEL) are valid raw in a JSON string,
# but JavaScript before ES2019 and readers that split lines the Unicode way
# (Python's str.splitlines) break an NDJSON record on them.
JSON_LINE_SEPARATORS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def _json_text(value: str) -> str:
    """json.dumps(value, ensure_ascii=False), with the separators escaped."""
    text = _json_str(value)
    return text if text.isascii() else text.translate(JSON_LINE_SEPARATORS)


_CSV_HEADER = ",".join(EXPORT_FIELDS) + "\r\n"
_JSON_KEYS = tuple(
    ("{" if i == 0 else ", ") + json.dumps(name) + ": " for i, name in enumerate(EXPORT_FIELDS)
)

_EPOCH_DAY = date(1970, 1, 1)
_DAYS: dict[int, str] = {}
_CLOCK = [f"T{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
_SECONDS = [f"{s:02d}" for s in range(60)]


def _iso_us(us: int) -> str:
    """RFC 3339 UTC of microseconds since the epoch, as datetime.isoformat
    writes it with "Z" (a fraction only when there is one)."""
    seconds, fraction = divmod(us, 1_000_000)
    days, second = divmod(seconds, 86_400)
    day = _DAYS.get(days)
    if day is None:
        if len(_DAYS) > 4096:
            _DAYS.clear()
        day = _DAYS[days] = (_EPOCH_DAY + timedelta(days=days)).isoformat()
    minute, second = divmod(second, 60)
    if fraction:
        return f"{day}{_CLOCK[minute]}{_SECONDS[second]}.{fraction:06d}Z"
    return f"{day}{_CLOCK[minute]}{_SECONDS[second]}Z"


def _times(column: Sequence) -> list:
    if None in column:
        return [None if us is None else _iso_us(us) for us in column]
    distinct = set(column)
    if len(distinct) * 2 < len(column):  # received_at: one value per stored batch
        text = {us: _iso_us(us) for us in distinct}
        return list(map(text.__getitem__, column))
    return list(map(_iso_us, column))


def _seconds(us: int | None, none: str) -> str:
    """Microseconds as seconds, as timedelta.total_seconds() gives them."""
    return none if us is None else repr(us / 1_000_000)


def _attributes(column: Sequence, sort_keys: bool) -> list:
    """Stored JSON text re-encoded as the record's dict would be, so the
    output does not depend on how storage wrote it; None when empty."""
    out = []
    for text in column:
        value = json.loads(text) if text else None
        text = json.dumps(value, ensure_ascii=False, sort_keys=sort_keys) if value else None
        out.append(text if text is None or text.isascii() else text.translate(JSON_LINE_SEPARATORS))
    return out


def _all_none(column: Sequence) -> bool:
    return column[0] is None and column.count(None) == len(column)


def _number_texts(column: Sequence, finite: bool) -> list[str] | None:
    """The numbers as csv.writer and json.dumps write them (repr), each
    distinct value formatted once; None unless all are of one type (int or
    float) and, if `finite`, none is NaN or infinite."""
    kinds = set(map(type, column))
    if kinds == {float}:
        if finite and not math.isfinite(sum(column)):  # a NaN or an infinity makes the sum one
            return None
    elif kinds != {int}:
        return None
    distinct = set(column)
    # Values that repeat (the coordinates of a few places, status codes) are
    # formatted once; not with a float zero, as 0.0 and -0.0 are one key.
    if len(distinct) * 4 <= len(column) and (kinds == {int} or 0.0 not in distinct):
        text = {value: repr(value) for value in distinct}
        return list(map(text.__getitem__, column))
    return list(map(repr, column))


def _csv_plain(joined: str) -> bool:
    """Whether no cell of a column joined with NULs (and led by one) needs
    quotes or starts like a formula. One-character scans are memchr fast;
    the slower two-character scan runs only for a formula character that
    occurs at all."""
    for mark in _CSV_QUOTED:
        if mark in joined:
            return False
    for start in _FORMULA_START:
        if start in joined and "\0" + start in joined:
            return False
    return True


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        return repr(value) if isinstance(value, float) else str(value)
    text = cast(str, csv_safe(value))  # text stays text
    if any(mark in text for mark in _CSV_QUOTED):
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_column(i: int, column: Sequence) -> Sequence[str] | repeat:
    """The CSV cells of one column of the page."""
    if _all_none(column):
        return repeat("")
    if i in _TEXT:
        try:
            if _csv_plain("\0" + "\0".join(column)):
                return column
        except TypeError:  # not all text
            pass
    elif i in _TIMES:
        column = _times(column)
        if None not in column:
            return column
    elif i == _DURATION:
        return [_seconds(us, "") for us in column]
    elif i == _ATTRIBUTES:
        column = _attributes(column, sort_keys=True)
    elif i in _NUMBERS:
        texts = _number_texts(column, finite=False)
        if texts is not None:
            return texts
    return list(map(_csv_cell, column))


def _json_value(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return _json_text(value)
    if type(value) is float and math.isfinite(value) or type(value) is int:
        return repr(value)
    return json.dumps(value)


def _json_column(i: int, column: Sequence) -> tuple[bool, Sequence[str] | str]:
    """The JSON values of one column of the page: whether they still need
    quotes around them, and the values (one text for all rows when constant)."""
    if i == _ATTRIBUTES:
        if _all_none(column):
            return False, "{}"
        return False, [text or "{}" for text in _attributes(column, sort_keys=False)]
    if _all_none(column):
        return False, "null"
    if i in _TEXT:
        try:
            joined = "".join(column)
        except TypeError:  # not all text
            pass
        else:
            # Nothing _json_text escapes: no control character, separator, quote or
            # backslash (isprintable() is also false for a few more, which only costs time).
            if joined.isprintable() and '"' not in joined and "\\" not in joined:
                return True, column
    elif i in _TIMES:
        column = _times(column)
        if None not in column:
            return True, column
    elif i == _DURATION:
        return False, [_seconds(us, "null") for us in column]
    elif i in _NUMBERS:
        texts = _number_texts(column, finite=True)
        if texts is not None:
            return False, texts
    return False, list(map(_json_value, column))


def _columns(rows: Sequence[Sequence]) -> list[tuple]:
    return list(zip(*rows, strict=True))[: len(EXPORT_ROW)]


def _csv_lines(rows: Sequence[Sequence]) -> str:
    cells = [_csv_column(i, column) for i, column in enumerate(_columns(rows))]
    # strict=False: a constant column is an endless repeat().
    return "\r\n".join(map(",".join, zip(*cells, strict=False))) + "\r\n"


def _json_records(rows: Sequence[Sequence]) -> Iterator[str]:
    """Each record is one join of its values and the constant text between
    them (keys, separators, quotes, constant values)."""
    parts: list = []
    between = ""
    for key, (i, column) in zip(_JSON_KEYS, enumerate(_columns(rows)), strict=False):
        quote, values = _json_column(i, column)
        between += key
        if isinstance(values, str):
            between += values
            continue
        if quote:
            between += '"'
        parts += (repeat(between), values)
        between = '"' if quote else ""
    parts.append(repeat(between + "}"))
    return map("".join, zip(*parts, strict=False))  # constant parts are endless repeat()s


def _page_text(rows: Sequence[Sequence], fmt: str, first: bool) -> str:
    if fmt == "csv":
        return _csv_lines(rows)
    if fmt == "json":
        return ("[\n" if first else ",\n") + ",\n".join(_json_records(rows))
    return "\n".join(_json_records(rows)) + "\n"


def _split(data: bytes, limit: int) -> tuple[list[bytes], bytes]:
    """Pieces of at most `limit` bytes, cut after a newline where one is
    near (else between two characters), and the rest (at most `limit`)."""
    pieces = []
    start = 0
    while len(data) - start > limit:
        cut = data.rfind(b"\n", start, start + limit) + 1
        if cut <= start + limit // 2:  # a very long line: cut at a character boundary
            cut = start + limit
            while data[cut] & 0xC0 == 0x80:
                cut -= 1
        pieces.append(data[start:cut])
        start = cut
    return pieces, data[start:]


def _chunks(pages: Iterator[Sequence[Sequence]], fmt: str) -> Iterator[bytes]:
    """The export's bytes, in chunks of at most EXPORT_CHUNK_BYTES, from
    pages of stored rows."""
    pending = [_CSV_HEADER] if fmt == "csv" else []
    size = len(pending[0]) if pending else 0
    rest = b""
    first = True
    for rows in pages:
        text = _page_text(rows, fmt, first)
        first = False
        pending.append(text)
        size += len(text)
        if size + len(rest) >= EXPORT_CHUNK_BYTES:
            pieces, rest = _split(rest + "".join(pending).encode(), EXPORT_CHUNK_BYTES)
            pending, size = [], 0
            yield from pieces
    if fmt == "json":
        pending.append("[]\n" if first else "\n]\n")
    pieces, rest = _split(rest + "".join(pending).encode(), EXPORT_CHUNK_BYTES)
    yield from pieces
    if rest:
        yield rest
