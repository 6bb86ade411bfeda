"""The event log: idempotent bulk insert, keyset pages, window counts."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, bindparam, func, select, tuple_
from sqlalchemy.engine.interfaces import DBAPICursor

from uba.domain.events import EXPORT_ROW, ActivityEvent, ActivityType, EventFilter
from uba.storage.models import (
    EVENT_INSERT_COLUMNS,
    EventKeyRow,
    EventRollupRow,
    EventRow,
    UserHourRow,
    table_of,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
events_t = table_of(EventRow)
event_keys_t = table_of(EventKeyRow)
_TYPES_BY_VALUE = {t.value: t for t in ActivityType}


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def to_us_or_none(moment: datetime | None) -> int | None:
    return None if moment is None else to_us(moment)


def from_us_or_none(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


@dataclass(frozen=True, slots=True)
class EventKey:
    """Position of an event in time order: the keyset of pagination."""

    occurred_at_us: int
    id: int


def _row_values(e: ActivityEvent, received_at_us: int) -> tuple:
    # Order must match EVENT_INSERT_COLUMNS.
    return (
        e.event_id,
        e.user_id,
        e.type.value,
        to_us(e.occurred_at),
        received_at_us,
        e.source_ip,
        e.user_agent,
        e.device_id,
        e.session_id,
        e.country_code,
        e.city,
        e.latitude,
        e.longitude,
        e.timezone,
        e.peer_group,
        e.api_method,
        e.api_path,
        e.status_code,
        e.bytes_transferred,
        None if e.session_duration is None else e.session_duration // timedelta(microseconds=1),
        e.source,
        json.dumps(e.attributes, ensure_ascii=False, sort_keys=True) if e.attributes else None,
    )


assert len(EVENT_INSERT_COLUMNS) == 22 and EVENT_INSERT_COLUMNS[0] == "event_id"

HOUR_US = 3_600_000_000
rollup_t = table_of(EventRollupRow)
user_hours_t = table_of(UserHourRow)
_ROLLUP_SQL = (
    "INSERT INTO event_rollup (hour, type, count) VALUES (?, ?, ?) "
    "ON CONFLICT (hour, type) DO UPDATE SET count = event_rollup.count + excluded.count"
)
_USER_HOURS_SQL = (
    "INSERT INTO user_hours (hour, user_id) VALUES (?, ?) ON CONFLICT (hour, user_id) DO NOTHING"
)
# PostgreSQL: both rollups in one round trip, their rows as array literals
# (unnest keeps the arrays' sorted order).
_PG_ROLLUPS_SQL = (
    _ROLLUP_SQL.replace(
        "VALUES (?, ?, ?)", "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::bigint[])"
    )
    + "; "
    + _USER_HOURS_SQL.replace("VALUES (?, ?)", "SELECT * FROM unnest(%s::bigint[], %s::text[])")
)


def pg_int_array(values: Iterable[int]) -> str:
    """A PostgreSQL array literal of integers, for a `%s::bigint[]`
    parameter: cheaper than psycopg2's adaptation of a list."""
    return "{" + ",".join(map(str, values)) + "}"


def pg_text_array(values: list[str]) -> str:
    """A PostgreSQL array literal of strings, for a `%s::text[]` parameter:
    each quoted, with backslashes and double quotes escaped (text fields
    hold no NUL)."""
    if not values:
        return "{}"
    joined = '","'.join(values)
    if "\\" in joined or '"' in joined:
        joined = '","'.join(v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return '{"' + joined + '"}'


_COPY_EVENTS_SQL = f"COPY events ({', '.join(EVENT_INSERT_COLUMNS)}) FROM STDIN"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_value(value: object) -> str:
    """One field in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    return repr(value) if isinstance(value, float) else str(value)


# NULL while a COPY text is built, "\\N" once it is checked. Validation refuses
# control characters in every text field (and JSON escapes them), so a NUL
# in the built text can only be this marker.
_NULL = "\x00"
_US = timedelta(microseconds=1)
_COPY_TABS = len(EVENT_INSERT_COLUMNS) - 1


def _copy_line(e: ActivityEvent, received_at_us: int) -> str:
    """`_row_values` as one COPY line, built in one f-string: values not yet
    escaped, NULL as `_NULL`. Order must match EVENT_INSERT_COLUMNS."""
    lat, lon, span, attributes = e.latitude, e.longitude, e.session_duration, e.attributes
    return (
        f"{e.event_id}\t{e.user_id}\t{e.type.value}\t{to_us(e.occurred_at)}\t{received_at_us}\t"
        f"{e.source_ip}\t{e.user_agent}\t{e.device_id}\t{e.session_id}\t{e.country_code}\t"
        f"{e.city}\t{_NULL if lat is None else repr(lat)}\t{_NULL if lon is None else repr(lon)}\t"
        f"{e.timezone}\t"
        f"{e.peer_group}\t{e.api_method}\t{e.api_path}\t{e.status_code}\t{e.bytes_transferred}\t"
        f"{_NULL if span is None else span // _US}\t{e.source}\t"
        f"{json.dumps(attributes, ensure_ascii=False, sort_keys=True) if attributes else _NULL}\n"
    )


def _needs_no_escapes(text: str, lines: int) -> bool:
    """True when no value in these COPY lines holds a tab, newline, carriage
    return or backslash: the only tabs and newlines are the separators."""
    return (
        text.count("\t") == _COPY_TABS * lines
        and text.count("\n") == lines
        and "\\" not in text
        and "\r" not in text
    )


def copy_from_text(cursor, sql: str, text: str) -> None:
    """Runs `COPY ... FROM STDIN` with `text`, handed to psycopg2 in one
    read. It reads a file in chunks (8 KB by default) and takes the
    interpreter lock back after sending each; while the event loop is busy
    converting the next requests, every take-back waits for it (up to the
    5 ms switch interval), so a group of thousands of events would wait
    hundreds of times."""
    cursor.copy_expert(sql, io.StringIO(text), size=len(text) + 1)


def copy_text(events: Sequence[ActivityEvent], received_at_us: int) -> str:
    """The events as PostgreSQL COPY text, the same as `_copy_value` over
    `_row_values` gives but cheaper (docs/benchmarks.md): a group is
    formatted line by line without escaping, checked once for characters
    that need it, and only lines holding such characters are built again
    field by field."""
    lines = [_copy_line(e, received_at_us) for e in events]
    text = "".join(lines)
    if not _needs_no_escapes(text, len(lines)):
        text = "".join(
            line
            if _needs_no_escapes(line, 1)
            else "\t".join(map(_copy_value, _row_values(e, received_at_us))) + "\n"
            for e, line in zip(events, lines, strict=True)
        )
    return text.replace(_NULL, "\\N")


_SELECT_COLUMNS = (events_t.c.id, *(events_t.c[name] for name in EVENT_INSERT_COLUMNS))
# The export reads the domain's EXPORT_ROW (named as the columns), then `id` for the keyset.
_EXPORT_COLUMNS = (*(events_t.c[name] for name in EXPORT_ROW), events_t.c.id)
_EXPORT_OCCURRED = EXPORT_ROW.index("occurred_at_us")


def _event_from_row(row: Sequence) -> ActivityEvent:
    (
        _id,
        event_id,
        user_id,
        type_,
        occurred,
        received,
        source_ip,
        user_agent,
        device_id,
        session_id,
        country_code,
        city,
        latitude,
        longitude,
        tz,
        peer_group,
        api_method,
        api_path,
        status_code,
        bytes_transferred,
        session_us,
        source,
        attributes,
    ) = row
    return ActivityEvent(
        event_id=event_id,
        user_id=user_id,
        type=_TYPES_BY_VALUE[type_],
        occurred_at=from_us(occurred),
        received_at=from_us(received),
        source_ip=source_ip,
        user_agent=user_agent,
        device_id=device_id,
        session_id=session_id,
        country_code=country_code,
        city=city,
        latitude=latitude,
        longitude=longitude,
        timezone=tz,
        peer_group=peer_group,
        api_method=api_method,
        api_path=api_path,
        status_code=status_code,
        bytes_transferred=bytes_transferred,
        session_duration=None if session_us is None else timedelta(microseconds=session_us),
        source=source,
        attributes=json.loads(attributes) if attributes else {},
    )


def driver_cursor(conn: Connection) -> DBAPICursor:
    """A cursor of the driver's own connection under `conn`, for the hot
    paths that skip SQLAlchemy's statement handling."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None, "the connection was closed"
    return dbapi.cursor()


_COLUMNS = ", ".join(EVENT_INSERT_COLUMNS)
_SQLITE_INSERT_NEW_SQL = (
    f"INSERT OR IGNORE INTO events ({_COLUMNS}) "
    f"VALUES ({', '.join('?' for _ in EVENT_INSERT_COLUMNS)})"
)
# PostgreSQL: the events' keys (migration 0012), all of them by COPY behind
# a savepoint (one round trip), or those not stored yet.
_COPY_KEYS_SQL = (
    "SAVEPOINT uba_events; COPY event_keys (event_id, occurred_at_us, received_at_us) FROM STDIN"
)
_PG_NEW_KEYS_SQL = (
    "INSERT INTO event_keys (event_id, occurred_at_us, received_at_us) "
    "SELECT k, o, %s FROM unnest(%s::text[], %s::bigint[]) AS t(k, o) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)
# The export's statements compiled once per shape of filter (the dialect and
# the names of the values bound): SQL text, positional order, default values.
_export_statements: dict[tuple, tuple[str, Sequence[str] | None, dict[str, Any]]] = {}


class EventRepository:
    """Reads and writes the `events` table and its hourly rollups inside
    the transaction of one connection."""

    def __init__(self, conn: Connection, backend: str):
        self._conn = conn
        self.backend = backend

    def insert_new(self, events: Iterable[ActivityEvent], received_at: datetime) -> set[str]:
        """Inserts the events whose `event_id` is not stored yet; returns the
        ids that were inserted. The caller dedupes ids within the batch.

        The hot path of ingest, so it talks to the driver directly. On
        PostgreSQL see `_pg_insert`. On SQLite a per-row execute is cheap
        and tells each row's fate.
        """
        received_us = to_us(received_at)
        events = list(events)
        if not events:
            return set()
        cursor = driver_cursor(self._conn)
        try:
            if self.backend == "postgresql":
                return self._pg_insert(cursor, events, received_us)
            inserted = set()
            for row in (_row_values(e, received_us) for e in events):
                cursor.execute(_SQLITE_INSERT_NEW_SQL, row)
                if cursor.rowcount == 1:
                    inserted.add(row[0])
            return inserted
        finally:
            cursor.close()

    def _pg_insert(self, cursor, events: list[ActivityEvent], received_us: int) -> set[str]:
        """The keys go into `event_keys` first, whose unique index is the
        idempotency check, then the new events into `events`, both with
        COPY, the fastest bulk path. COPY cannot skip a key that is stored
        already: when the index refuses one (a retry, or another process
        storing the same event) the keys are undone to the savepoint and
        inserted with ON CONFLICT DO NOTHING instead, which costs more per
        row. Keys go in id order, so that two processes storing the same
        events lock them in the same order. An event whose day has no
        partition yet makes the second COPY fail: both are undone to the
        savepoint, the partitions are made and the group is stored again
        (uba.storage.partitions)."""
        from psycopg2.errors import CheckViolation, UniqueViolation

        ordered = sorted(events, key=lambda e: e.event_id)
        occurred = [to_us(e.occurred_at) for e in ordered]
        keys = "".join(
            f"{_copy_value(e.event_id)}\t{us}\t{received_us}\n"
            for e, us in zip(ordered, occurred, strict=True)
        )
        for attempt in range(2):
            new = events
            try:
                copy_from_text(cursor, _COPY_KEYS_SQL, keys)
            except UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT uba_events")
                cursor.execute(
                    _PG_NEW_KEYS_SQL,
                    (
                        received_us,
                        pg_text_array([e.event_id for e in ordered]),
                        pg_int_array(occurred),
                    ),
                )
                stored_now = {r[0] for r in cursor.fetchall()}
                new = [e for e in events if e.event_id in stored_now]
                if not new:
                    return set()
            try:
                copy_from_text(cursor, _COPY_EVENTS_SQL, copy_text(new, received_us))
            except CheckViolation as exc:
                if attempt or "no partition" not in str(exc):
                    raise
                cursor.execute("ROLLBACK TO SAVEPOINT uba_events")
                from uba.storage.partitions import add_partitions

                add_partitions(cursor, [to_us(e.occurred_at) for e in new], received_us)
                continue
            return {e.event_id for e in new}
        raise AssertionError("unreachable: the second attempt returns or raises")

    def received_at(self, event_ids: Iterable[str]) -> dict[str, datetime]:
        """When each of the given (already stored) events was received."""
        ids = list(event_ids)
        found: dict[str, datetime] = {}
        table = event_keys_t if self.backend == "postgresql" else events_t
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for event_id, us in self._conn.execute(
                select(table.c.event_id, table.c.received_at_us).where(table.c.event_id.in_(chunk))
            ):
                found[event_id] = from_us(us)
        return found

    def by_ids(self, event_ids: Sequence[str]) -> list[ActivityEvent]:
        found: list[ActivityEvent] = []
        for start in range(0, len(event_ids), 500):
            where = with_event_ids(self._conn, self.backend, event_ids[start : start + 500])
            if where is not None:
                found.extend(
                    _event_from_row(r)
                    for r in self._conn.execute(select(*_SELECT_COLUMNS).where(*where))
                )
        return found

    def page(
        self,
        flt: EventFilter,
        limit: int,
        after: EventKey | None,
        newest_first: bool,
    ) -> list[tuple[EventKey, ActivityEvent]]:
        """Up to `limit` events matching the filter, after the key, in time order."""
        query = select(*_SELECT_COLUMNS).where(*_conditions(flt))
        key = tuple_(events_t.c.occurred_at_us, events_t.c.id)
        if after is not None:
            bound = tuple_(after.occurred_at_us, after.id)
            query = query.where(key < bound if newest_first else key > bound)
        if newest_first:
            query = query.order_by(events_t.c.occurred_at_us.desc(), events_t.c.id.desc())
        else:
            query = query.order_by(events_t.c.occurred_at_us, events_t.c.id)
        rows = self._conn.execute(query.limit(limit)).all()
        return [(EventKey(r[4], r[0]), _event_from_row(r)) for r in rows]

    def export_page(
        self, flt: EventFilter, limit: int, after: EventKey | None
    ) -> tuple[list[tuple], EventKey | None]:
        """Up to `limit` events matching the filter after the key, oldest
        first, as the driver's plain tuples of the EXPORT_ROW columns then
        `id`, and the key of the last row.

        The export's hot path: no ORM or domain object, no Row object. The
        Core select is compiled once per shape of filter and run on the
        driver's cursor with this page's values."""
        values: dict[str, object] = {}

        def bind(name: str, value: object):
            values[name] = value
            return bindparam(name, value)

        conditions = _conditions(flt, bind)
        if after is not None:
            conditions.append(
                tuple_(events_t.c.occurred_at_us, events_t.c.id)
                > tuple_(
                    bind("after_occurred_at_us", after.occurred_at_us), bind("after_id", after.id)
                )
            )
        shape = (self._conn.dialect.name, *sorted(values))
        values["export_limit"] = limit
        statement = _export_statements.get(shape)
        if statement is None:
            query = (
                select(*_EXPORT_COLUMNS)
                .where(*conditions)
                .order_by(events_t.c.occurred_at_us, events_t.c.id)
                .limit(bindparam("export_limit", limit))
            )
            compiled = query.compile(dialect=self._conn.dialect)
            statement = _export_statements[shape] = (
                compiled.string,
                compiled.positiontup,
                compiled.params,
            )
        sql, positions, defaults = statement
        # The compiler's own parameters (SQLite's OFFSET 0), then this page's.
        named = {**defaults, **values}
        # SQLite's qmark style takes them in order.
        params = named if positions is None else tuple(named[name] for name in positions)
        cursor = driver_cursor(self._conn)
        try:
            cursor.execute(sql, params)
            rows = cast(list[tuple], cursor.fetchall())  # both drivers return a list
        finally:
            cursor.close()
        return rows, (EventKey(rows[-1][_EXPORT_OCCURRED], rows[-1][-1]) if rows else None)

    def add_to_rollups(self, events: Sequence[ActivityEvent]) -> None:
        """Counts newly stored events into the hourly rollups (same
        transaction). Keys are written in sorted order, so concurrent
        writers lock rows in the same order and cannot deadlock."""
        if not events:
            return
        # Ingest's hot path: whole-list passes and a C-counted Counter, and
        # array literals below rather than a loop and psycopg2's adaptation
        # of lists (measurements: docs/benchmarks.md).
        hours = [to_us(e.occurred_at) // HOUR_US for e in events]
        counts = sorted(Counter(zip(hours, [e.type.value for e in events], strict=True)).items())
        users = sorted(set(zip(hours, [e.user_id for e in events], strict=True)))
        cursor = driver_cursor(self._conn)
        try:
            if self.backend == "postgresql":
                cursor.execute(
                    _PG_ROLLUPS_SQL,
                    (
                        pg_int_array(h for (h, _), _ in counts),
                        pg_text_array([t for (_, t), _ in counts]),
                        pg_int_array(n for _, n in counts),
                        pg_int_array(h for h, _ in users),
                        pg_text_array([u for _, u in users]),
                    ),
                )
            else:
                cursor.executemany(_ROLLUP_SQL, [(h, t, n) for (h, t), n in counts])
                cursor.executemany(_USER_HOURS_SQL, users)
        finally:
            cursor.close()

    def window_counts(
        self, start_hour: int, end_hour: int
    ) -> tuple[dict[int, dict[str, int]], int]:
        """Events per (hour, type) for the hours in [start_hour, end_hour]
        (hours since the epoch), and the distinct users in them, from the
        rollups: the cost follows hours and active users, not events."""
        hourly: dict[int, dict[str, int]] = {}
        for h, type_, count in self._conn.execute(
            select(rollup_t.c.hour, rollup_t.c.type, rollup_t.c.count).where(
                rollup_t.c.hour >= start_hour, rollup_t.c.hour <= end_hour
            )
        ):
            hourly.setdefault(int(h), {})[type_] = count
        # COUNT over SELECT DISTINCT rather than COUNT(DISTINCT): PostgreSQL
        # always sorts for the latter but may hash the former (measurements:
        # docs/benchmarks.md).
        active = (
            select(user_hours_t.c.user_id)
            .where(user_hours_t.c.hour >= start_hour, user_hours_t.c.hour <= end_hour)
            .distinct()
            .subquery()
        )
        users = self._conn.execute(select(func.count()).select_from(active)).scalar_one()
        return hourly, users


def with_event_ids(conn: Connection, backend: str, event_ids: Iterable[str]) -> list | None:
    """WHERE clauses selecting the events of these ids (None: none is
    stored). On PostgreSQL the times come from `event_keys` first, so that
    only the partitions of those times are searched: `events` has no index
    on `event_id` there."""
    ids = list(set(event_ids))
    if backend != "postgresql":
        return [events_t.c.event_id.in_(ids)] if ids else None
    times = {
        us
        for (us,) in conn.execute(
            select(event_keys_t.c.occurred_at_us).where(event_keys_t.c.event_id.in_(ids))
        )
    }
    if not times:
        return None
    return [events_t.c.occurred_at_us.in_(sorted(times)), events_t.c.event_id.in_(ids)]


def _conditions(flt: EventFilter, bind=lambda name, value: value) -> list:
    """The filter's WHERE clauses; `bind(name, value)` may turn each value
    into a named bind parameter."""
    conds = []
    if flt.user_id:
        conds.append(events_t.c.user_id == bind("user_id", flt.user_id))
    if flt.type is not None:
        conds.append(events_t.c.type == bind("type", flt.type.value))
    if flt.start_time is not None:
        conds.append(events_t.c.occurred_at_us >= bind("start_us", to_us(flt.start_time)))
    if flt.end_time is not None:
        conds.append(events_t.c.occurred_at_us < bind("end_us", to_us(flt.end_time)))
    if flt.source_ip:
        conds.append(events_t.c.source_ip == bind("source_ip", flt.source_ip))
    return conds
