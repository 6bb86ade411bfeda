"""The partitions of PostgreSQL's events table (migration 0012).

A partition holds one UTC day of events by the time they occurred. Events
expire by whole days (uba.domain.retention), so expiry drops the expired
days' partitions whole: no event row is deleted and nothing of them is left
for VACUUM. Only the narrow rows that go with events are deleted in
batches: their keys in `event_keys` (found through the partition, before
it is dropped) and the hourly rollups.

Partitions are created ahead of time, for yesterday (late events just
after midnight), today and the next AHEAD_DAYS days, when the server starts
and at every retention pass, on a connection of their own. An event for a
day without one (an import of old history, or a server that was stopped
for days) gets its partition inside the ingest transaction that stores
it: a day for the last RECENT_DAYS, a calendar month before that (cut
short where it would meet another), so that years of imported history do
not become thousands of partitions.

Locks: a partition is created with CREATE TABLE and then ATTACH PARTITION,
which takes only SHARE UPDATE EXCLUSIVE on `events`, so reads, ingest and a
running pg_dump go on (CREATE TABLE ... PARTITION OF would wait for every
one of them and make every later statement on `events` wait behind it). An
expired partition leaves with DETACH PARTITION ... CONCURRENTLY, the same
lock, and is dropped once detached. Creations are serialised across
processes by an advisory lock and give up after LOCK_TIMEOUT; a detach
gives up after DETACH_TIMEOUT (a long pg_dump), and a detach or drop left
half-way is finished at the next pass.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from uba.storage.database import Database
from uba.storage.events import driver_cursor, pg_text_array, to_us

log = logging.getLogger(__name__)

DAY_US = 86_400_000_000
AHEAD_DAYS = 3
RECENT_DAYS = 35
LOCK_TIMEOUT = "2s"
# How long a detach may wait for the transactions that still see the
# partition (a pg_dump, say); after that it is finished at the next pass.
DETACH_TIMEOUT = "5s"
# pg_advisory_xact_lock key of partition changes ("uba-part" in ASCII), and
# the session lock of the one process that drops expired ones ("uba-drop").
_LOCK_KEY = 0x7562612D70617274
_DROP_KEY = 0x7562612D64726F70
_BOUND = re.compile(r"FROM \((.+?)\) TO \((.+?)\)")
# Tables named like a partition that is no longer attached: detached to be
# dropped.
_DETACHED = r"^events_(p[0-9]+|legacy)$"


class PartitionError(Exception):
    """No partition can be made for a time (its day is being detached)."""


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    lower: int | None  # None: MINVALUE (the legacy partition of migration 0012)
    upper: int
    detaching: bool = False

    def holds(self, us: int) -> bool:
        return (self.lower is None or self.lower <= us) and us < self.upper


def _bound(text: str) -> int | None:
    text = text.strip("'")
    return None if text == "MINVALUE" else int(text)


def attached(cursor) -> list[Partition]:
    """The partitions of `events`, oldest first."""
    cursor.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), i.inhdetachpending "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'events'::regclass"
    )
    found = []
    for name, bound, detaching in cursor.fetchall():
        match = _BOUND.search(bound)
        assert match, f"unexpected partition bound {bound!r}"
        upper = _bound(match.group(2))
        assert upper is not None
        found.append(Partition(name, _bound(match.group(1)), upper, detaching))
    return sorted(found, key=lambda p: (p.lower is not None, p.lower or 0))


def _month(us: int) -> tuple[int, int]:
    start = datetime.fromtimestamp(us / 1e6, UTC).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    end = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
    return to_us(start), to_us(end)


def range_for(us: int, now_us: int, existing: list[Partition]) -> tuple[int, int]:
    """The range of a new partition for time `us`, which none of `existing`
    holds: its day, or its month when older than RECENT_DAYS, cut short
    where it would overlap another partition."""
    day = us // DAY_US * DAY_US
    lower, upper = (day, day + DAY_US) if day >= now_us - RECENT_DAYS * DAY_US else _month(us)
    for p in existing:
        if p.holds(us):
            raise PartitionError(
                f"the partition {p.name} of {datetime.fromtimestamp(us / 1e6, UTC):%Y-%m-%d} is "
                "being detached; try again once it is gone"
            )
        if p.upper <= us:
            lower = max(lower, p.upper)
        elif p.lower is not None and p.lower > us:
            upper = min(upper, p.lower)
    return lower, upper


def add_partitions(cursor, times: Iterable[int], now_us: int) -> list[str]:
    """Creates partitions, in the caller's transaction, so that each time
    (microseconds) in `times` has one; returns their names. Waits at most
    LOCK_TIMEOUT for a lock (psycopg2's LockNotAvailable after that)."""
    days = sorted({t // DAY_US * DAY_US for t in times})
    cursor.execute("SELECT current_setting('lock_timeout')")
    (previous,) = cursor.fetchone()
    cursor.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_TIMEOUT,))
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
    existing = attached(cursor)
    created = []
    for day in days:
        if any(p.holds(day) and not p.detaching for p in existing):
            continue
        lower, upper = range_for(day, now_us, existing)
        name = datetime.fromtimestamp(lower / 1e6, UTC).strftime("events_p%Y%m%d")
        cursor.execute(f"CREATE TABLE {name} (LIKE events)")
        cursor.execute(
            f"ALTER TABLE events ATTACH PARTITION {name} FOR VALUES FROM ({lower}) TO ({upper})"
        )
        existing.append(Partition(name, lower, upper))
        created.append(name)
    cursor.execute("SELECT set_config('lock_timeout', %s, true)", (previous,))
    return created


class EventPartitions:
    """Creates the events' partitions ahead of time and drops expired ones,
    on connections of its own: never the ingest writer's, which must not
    wait for a detach (that waits for every older transaction to end).

    An expired partition is first detached, so that nothing is stored into
    it any more; then the keys of its events are deleted from `event_keys`,
    `batch` at a time, each followed by a pause that keeps this work to
    about `duty` of one connection's time (as the retention job's batches
    on the writer); then it is dropped. A detached partition left by a
    stopped server is found by its name and finished at the next pass."""

    def __init__(self, database: Database, batch: int = 5_000, duty: float = 0.05):
        assert database.backend == "postgresql"
        self._database = database
        self.batch = batch
        self.duty = duty
        self.keys_deleted = 0  # since this object was made
        self._stopping = threading.Event()
        # Detached partition -> the last (occurred_at_us, id) whose key is
        # deleted: a pass that ended early resumes there, not from the start.
        self._trimmed: dict[str, tuple[int, int]] = {}

    def stop(self) -> None:
        """Ends a pass under way at its next batch (the server is stopping)."""
        self._stopping.set()

    def resume(self) -> None:
        """Lets passes run again after `stop` (a benchmark's rounds)."""
        self._stopping.clear()

    def prepare(self, now: datetime) -> list[str]:
        """Partitions for yesterday, today and the next AHEAD_DAYS days;
        returns the names of those it created. A busy lock: nothing now,
        next pass."""
        from psycopg2.errors import LockNotAvailable

        today = to_us(now) // DAY_US * DAY_US
        try:
            with self._database.write() as conn:
                created = add_partitions(
                    driver_cursor(conn),
                    [today + k * DAY_US for k in range(-1, AHEAD_DAYS + 1)],
                    to_us(now),
                )
        except LockNotAvailable:
            log.info("event partitions: another change holds the lock; next pass")
            return []
        if created:
            log.info("created event partitions %s", ", ".join(created))
        return created

    def drop_expired(self, kind: str, cutoff: datetime) -> int:
        """Drops the partitions of events that all occurred before `cutoff`,
        with their keys; returns how many events they held (0 for other
        kinds, or while another server on the database is at it)."""
        if kind != "events":
            return 0
        with self._database.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            cursor = driver_cursor(conn)
            # Several servers on one database: one of them at a time.
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (_DROP_KEY,))
            row = cursor.fetchone()
            if not (row and row[0]):
                return 0
            try:
                cursor.execute("SET lock_timeout = %s", (DETACH_TIMEOUT,))
                return self._drop_expired(cursor, to_us(cutoff))
            finally:
                # The connection goes back to the pool: as it came.
                cursor.execute("RESET lock_timeout")
                cursor.execute("SELECT pg_advisory_unlock(%s)", (_DROP_KEY,))

    def _drop_expired(self, cursor, cutoff_us: int) -> int:
        from psycopg2.errors import LockNotAvailable

        for p in attached(cursor):
            if p.detaching or p.upper <= cutoff_us:
                how = "FINALIZE" if p.detaching else "CONCURRENTLY"
                try:
                    cursor.execute(f"ALTER TABLE events DETACH PARTITION {p.name} {how}")
                except LockNotAvailable:
                    # Half-detached now: finished at the next pass.
                    log.info("event partition %s: detach waits for other work", p.name)
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND NOT relispartition "
            "AND relnamespace = (SELECT relnamespace FROM pg_class "
            "WHERE oid = 'events'::regclass) AND relname ~ %s ORDER BY relname",
            (_DETACHED,),
        )
        dropped = 0
        for (name,) in cursor.fetchall():
            self._forget_keys(cursor, name)
            if self._stopping.is_set():
                break
            cursor.execute(f"SELECT count(*) FROM {name}")
            row = cursor.fetchone()
            held = int(row[0]) if row else 0
            cursor.execute(f"DROP TABLE {name}")
            self._trimmed.pop(name, None)
            log.info("dropped event partition %s (%d events)", name, held)
            dropped += held
        return dropped

    def _forget_keys(self, cursor, name: str) -> None:
        """Deletes the keys of the events in the detached partition `name`,
        in batches, oldest first."""
        after = self._trimmed.get(name, (-(2**63), -(2**63)))
        while not self._stopping.is_set():
            started = time.monotonic()
            cursor.execute(
                f"SELECT occurred_at_us, id, event_id FROM {name} "
                "WHERE (occurred_at_us, id) > (%s, %s) ORDER BY occurred_at_us, id LIMIT %s",
                (*after, self.batch),
            )
            rows = cursor.fetchall()
            if not rows:
                break
            cursor.execute(
                "DELETE FROM event_keys WHERE event_id = ANY(%s::text[])",
                (pg_text_array(sorted(r[2] for r in rows)),),
            )
            self.keys_deleted += cursor.rowcount
            after = self._trimmed[name] = (rows[-1][0], rows[-1][1])
            took = time.monotonic() - started
            self._stopping.wait(took * (1.0 - self.duty) / self.duty)
