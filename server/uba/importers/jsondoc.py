"""What the JSON-based vendor importers share: reading records, building
events, counting what could not be used.

Vendors hand out JSON in three shapes, all read here record by record:

  JSON Lines             one object a line (Okta's and Entra's exports, Winlogbeat,
                         Filebeat, OCSF in a data lake)
  an array               `[{...}, {...}]`, pretty-printed or not (Okta's API pages)
  a wrapped array        `{"Records": [...]}` (CloudTrail files), `{"value": [...],
                         "@odata.nextLink": ...}` (Microsoft Graph pages)

A document is read with an incremental decoder, one element at a time, so
memory stays bounded by the largest record, not the file. A file whose
first line is a complete JSON object is JSON Lines; a JSON Lines line that
is itself a wrapper (a CloudTrail file on one line) is unwrapped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from uba.domain.validation import is_ip
from uba.importers import ImportStats, Occurrences, stable_id
from uba.v1 import events_pb2
from uba_client import events as ev

WRAPPERS = ("Records", "value")
# A record larger than this is refused rather than buffered.
MAX_RECORD_CHARS = 4 * 1024 * 1024
_DECODER = json.JSONDecoder()
_WS = " \t\r\n"


class Skip(Exception):
    """A record that describes activity but cannot become an event."""


class Ignore(Exception):
    """A record understood that records no user activity uba models."""


def dig(record: object, path: str, default=None):
    """record["a"]["b"]["c"] for "a.b.c", also when a producer flattened
    some of the levels into dotted keys ({"event.category": ...})."""
    if not isinstance(record, dict):
        return default
    if path in record:
        return record[path]
    head, sep, rest = path.partition(".")
    while sep:
        if head in record:
            found = dig(record[head], rest, None)
            if found is not None:
                return found
        nxt, sep, rest = rest.partition(".")
        head = f"{head}.{nxt}"
    return default


def text(value: object) -> str:
    """A field's text: '' for None and for the '-' Windows writes for none."""
    if value is None:
        return ""
    out = str(value).strip()
    return "" if out == "-" else out


def user_key(name: object, fold: bool = True) -> str:
    """A user id as uba stores it: trimmed; lower-cased where the vendor's
    names are case-insensitive (e-mail addresses, UPNs, Windows accounts),
    so 'Alice@Example.com' and 'alice@example.com' are one user."""
    out = text(name)
    return out.lower() if fold else out


def epoch_ms(value: Any) -> datetime:
    return datetime.fromtimestamp(float(value) / 1000.0, UTC)


class JsonImporter:
    """Base of the JSON importers: subclasses set `prefix` and `source`
    and implement `convert(record)`, which returns events or raises Skip
    or Ignore."""

    prefix = "json"
    default_source = ""

    def __init__(self, source_name: str = "", source: str = "", **_ignored):
        self.source_name = source_name
        self.source = source or self.default_source
        self.stats = ImportStats()
        self._occurrences = Occurrences()

    def state(self) -> dict:
        """Resumable state (see `uba ingest --follow`); subclasses that
        remember more across records extend it."""
        return {"occurrences": self._occurrences.state()}

    def restore(self, state: dict) -> None:
        self._occurrences.restore(state.get("occurrences") or {})

    def parse(self, lines: Iterable[str]) -> Iterator[events_pb2.ActivityEvent]:
        for no, record in read_records(lines, self.stats):
            self.stats.lines += 1
            if record is None:
                continue
            try:
                events = list(self.convert(record))
            except Skip as skip:
                self.stats.skip(str(skip), no)
                continue
            except Ignore:
                self.stats.ignored += 1
                continue
            except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
                self.stats.unparsable(
                    no, f"{type(exc).__name__}: {exc}", json.dumps(record, default=str)
                )
                continue
            for event in events:
                self.stats.events += 1
                self.stats.by_type[ev.type_name(event.type)] += 1
                yield event

    def convert(self, record: dict) -> Iterable[events_pb2.ActivityEvent]:
        raise NotImplementedError

    def event(
        self,
        record: dict,
        user: str,
        kind: str,
        at: object,
        uid: object = None,
        attributes: dict | None = None,
        **fields,
    ) -> events_pb2.ActivityEvent:
        """An event; its id hashes the vendor's own unique id when it has
        one, else the record's content (and how many identical records came
        before it at the same time)."""
        if not user:
            raise Skip("no user name")
        ip = fields.pop("source_ip", "")
        attributes = {k: str(v) for k, v in (attributes or {}).items() if v not in (None, "")}
        if ip and not is_ip(ip):
            attributes.setdefault("source_host", ip)
            ip = ""
        event = ev.event(
            user,
            kind,
            at,
            source_ip=ip,
            source=fields.pop("source", "") or self.source,
            attributes=attributes or None,
            **{k: v for k, v in fields.items() if v not in (None, "")},
        )
        if uid:
            event.event_id = stable_id(self.prefix, uid, kind if kind else "")
        else:
            canonical = json.dumps(record, sort_keys=True, default=str)
            stamp = (event.occurred_at.seconds, event.occurred_at.nanos)
            event.event_id = stable_id(
                self.prefix, canonical, self._occurrences.next(stamp, canonical)
            )
        return event


# -- reading ----------------------------------------------------------------


def read_records(lines: Iterable[str], stats: ImportStats) -> Iterator[tuple[int, dict | None]]:
    """(line number, record) for each record of a JSON Lines file or JSON
    document; (line number, None) after counting a record that is not a
    JSON object as unparsed or a blank line as ignored."""
    it = iter(lines)
    first: list[str] = []
    for raw in it:
        first.append(raw)
        if raw.strip():
            break
    if not first or not first[-1].strip():
        stats.ignored += len(first)
        return
    head = first[-1].strip()
    if head.startswith("{"):
        try:
            complete = isinstance(json.loads(head.removesuffix(",")), dict)
        except json.JSONDecodeError:
            complete = False
        if complete:
            stats.ignored += len(first) - 1
            yield from _lines(first[-1:], it, len(first), stats)
            return
    yield from _document(first, it, stats)


def _lines(
    first: list[str], it: Iterator[str], start: int, stats: ImportStats
) -> Iterator[tuple[int, dict | None]]:
    no = start - 1
    for raw in _chain(first, it):
        no += 1
        line = raw.strip()
        if line in ("", "[", "]", "[]"):
            stats.ignored += 1
            continue
        try:
            record = json.loads(line.removesuffix(","))
        except json.JSONDecodeError as exc:
            stats.unparsable(no, f"not JSON: {exc.msg}", line)
            yield no, None
            continue
        if not isinstance(record, dict):
            stats.unparsable(no, "not a JSON object", line)
            yield no, None
            continue
        wrapped = _wrapped(record)
        if wrapped is None:
            yield no, record
            continue
        for item in wrapped:
            if isinstance(item, dict):
                yield no, item
            else:
                stats.unparsable(no, "array element is not a JSON object", json.dumps(item))
                yield no, None


def _wrapped(record: dict) -> list | None:
    for key in WRAPPERS:
        if isinstance(record.get(key), list) and all(
            k in WRAPPERS or k.startswith("@odata") for k in record
        ):
            return record[key]
    return None


def _chain(first: list[str], it: Iterator[str]) -> Iterator[str]:
    yield from first
    yield from it


class _Buffer:
    """Text of a document read line by line, with the line number of any
    position; consumed text is dropped so memory stays bounded."""

    def __init__(self, lines: Iterator[str]):
        self.lines = lines
        self.buf = ""
        self.pos = 0
        self.line_base = 1  # line number of buf[0]
        self.eof = False

    def more(self) -> bool:
        if self.eof:
            return False
        if self.pos > 65536:
            self.line_base += self.buf.count("\n", 0, self.pos)
            self.buf, self.pos = self.buf[self.pos :], 0
        for raw in self.lines:
            self.buf += raw if raw.endswith("\n") else raw + "\n"
            return True
        self.eof = True
        return False

    def line_no(self, pos: int | None = None) -> int:
        return self.line_base + self.buf.count("\n", 0, self.pos if pos is None else pos)

    def peek(self) -> str:
        """The next non-blank character ('' at the end)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def value(self):
        """Decodes the JSON value at the position, reading more lines while
        it is incomplete."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError:
                if len(self.buf) - self.pos > MAX_RECORD_CHARS or not self.more():
                    raise
                continue
            # A number may go on in the next line; anything else has ended.
            if end == len(self.buf) and isinstance(value, (int, float)) and self.more():
                continue
            self.pos = end
            return value


class _Malformed(Exception):
    pass


def _document(
    first: list[str], it: Iterator[str], stats: ImportStats
) -> Iterator[tuple[int, dict | None]]:
    buf = _Buffer(_chain(first, it))
    try:
        while (c := buf.peek()) != "":
            if c == "[":
                buf.pos += 1
                yield from _elements(buf, stats)
            elif c == "{":
                yield from _object(buf, stats)
            else:
                raise _Malformed(f"unexpected {c!r}")
    except (_Malformed, json.JSONDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        no = buf.line_no()
        stats.unparsable(
            no,
            f"not JSON, the rest of the file is not read: {reason}",
            buf.buf[buf.pos : buf.pos + 200],
        )
        yield no, None


def _elements(buf: _Buffer, stats: ImportStats) -> Iterator[tuple[int, dict | None]]:
    """The elements of an array whose '[' was consumed, through its ']'."""
    if buf.peek() == "]":
        buf.pos += 1
        return
    while True:
        no = buf.line_no(buf.pos) if buf.peek() else buf.line_no()
        item = buf.value()
        if isinstance(item, dict):
            yield no, item
        else:
            stats.unparsable(no, "array element is not a JSON object", json.dumps(item)[:200])
            yield no, None
        c = buf.peek()
        buf.pos += 1
        if c == "]":
            return
        if c != ",":
            raise _Malformed(f"expected ',' or ']' in an array, found {c!r}")


def _object(buf: _Buffer, stats: ImportStats) -> Iterator[tuple[int, dict | None]]:
    """A top-level object: a wrapper whose array is streamed, or (after its
    last key) one record of its own."""
    no = buf.line_no(buf.pos)
    buf.pos += 1
    record: dict = {}
    streamed = False
    if buf.peek() == "}":
        buf.pos += 1
        return
    while True:
        if buf.peek() != '"':
            raise _Malformed("expected a key")
        key = buf.value()
        if buf.peek() != ":":
            raise _Malformed("expected ':'")
        buf.pos += 1
        if key in WRAPPERS and buf.peek() == "[":
            buf.pos += 1
            streamed = True
            yield from _elements(buf, stats)
        else:
            record[key] = buf.value()
        c = buf.peek()
        buf.pos += 1
        if c == "}":
            break
        if c != ",":
            raise _Malformed(f"expected ',' or '}}' in an object, found {c!r}")
    if not streamed:
        yield no, record
