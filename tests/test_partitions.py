"""PostgreSQL's events table, partitioned by day (migration 0012): an
existing table is converted without losing an event or the idempotency of
its ids; events of any time find a partition, across a day boundary and
far in the past; retention drops the partitions of expired days whole;
erasure takes the keys with the events."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from uba.domain.events import ActivityEvent, ActivityType, RecordStatus
from uba.domain.ingest import IngestService
from uba.domain.retention import RetentionPolicy, RetentionService
from uba.storage import partitions
from uba.storage.database import MIGRATIONS, Database
from uba.storage.events import EventRepository, to_us
from uba.storage.partitions import DAY_US, EventPartitions, Partition, range_for
from uba.storage.store import Store

pytestmark = [pytest.mark.unit]


def alembic(database: Database, action, revision: str) -> None:
    with database.engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        action(cfg, revision)


@pytest.fixture
def database(make_database_url):
    database = Database(make_database_url("postgresql"))
    yield database
    database.dispose()


def rows(database: Database, sql: str, **params) -> list:
    with database.read() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def where(database: Database) -> dict[str, str]:
    """event_id -> the partition that holds it."""
    return dict(rows(database, "SELECT event_id, tableoid::regclass::text FROM events"))


def day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def stored(ingest: IngestService, events: list[ActivityEvent]) -> list[RecordStatus]:
    return [o.status for o in ingest.submit(events).result(timeout=60)]


ACCEPTED, DUPLICATE = RecordStatus.ACCEPTED, RecordStatus.DUPLICATE


def test_an_existing_table_is_converted_keeping_every_event_and_its_id(database):
    alembic(database, command.upgrade, "0011")
    now = datetime.now(UTC)
    times = [now - timedelta(days=d, minutes=d) for d in range(0, 60, 3)] + [
        datetime(2001, 3, 4, 5, 6, tzinfo=UTC)
    ]
    with database.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO events (event_id, user_id, type, occurred_at_us, received_at_us, "
                "source_ip, user_agent, device_id, session_id, country_code, city, timezone, "
                "peer_group, api_method, api_path, status_code, bytes_transferred, source) "
                "VALUES (:id, 'old', 'api_call', :at, :at, '', '', '', '', '', '', '', '', '', "
                "'', 0, 0, '')"
            ),
            [{"id": f"old-{i}", "at": to_us(t)} for i, t in enumerate(times)],
        )
    before = rows(database, "SELECT id, event_id, occurred_at_us FROM events ORDER BY id")

    database.upgrade()
    assert database.current_revision() == Database.head_revision()
    assert rows(database, "SELECT id, event_id, occurred_at_us FROM events ORDER BY id") == before
    # The old table is the partition of everything up to the day after its
    # newest event; days after it have partitions of their own.
    tomorrow = to_us(day(now)) + DAY_US
    bounds = rows(
        database,
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass "
        "ORDER BY 1",
    )
    assert bounds[0] == ("events_legacy", f"FOR VALUES FROM (MINVALUE) TO ('{tomorrow}')")
    assert len(bounds) == 4  # the legacy one, then tomorrow and the two days after
    assert set(where(database).values()) == {"events_legacy"}

    store = Store(database)
    ingest = IngestService(store)
    try:
        # Sent again, with other times: still duplicates, received when first.
        again = [
            ActivityEvent(f"old-{i}", "old", ActivityType.API_CALL, now) for i in range(len(times))
        ]
        outcomes = ingest.submit(again).result(timeout=60)
        assert {o.status for o in outcomes} == {DUPLICATE}
        assert [to_us(o.received_at) for o in outcomes] == [to_us(t) for t in times]
        fresh = [
            ActivityEvent("new-today", "new", ActivityType.LOGIN_SUCCESS, now),
            ActivityEvent("new-tomorrow", "new", ActivityType.LOGIN_SUCCESS, now + timedelta(1)),
        ]
        assert stored(ingest, fresh) == [ACCEPTED, ACCEPTED]
        placed = where(database)
        assert placed["new-today"] == "events_legacy"
        assert placed["new-tomorrow"] == f"events_p{now + timedelta(1):%Y%m%d}"
        # The ids go on from the old table's sequence.
        (newest,) = rows(database, "SELECT max(id) FROM events WHERE user_id = 'new'")
        assert newest[0] > before[-1][0]
        with database.read() as conn:
            found = EventRepository(conn, "postgresql").by_ids(["old-3", "new-tomorrow", "none"])
        assert {e.event_id for e in found} == {"old-3", "new-tomorrow"}
    finally:
        ingest.close()

    # And back: one plain table with its unique index again.
    alembic(database, command.downgrade, "0011")
    assert len(rows(database, "SELECT id FROM events")) == len(times) + 2
    assert rows(database, "SELECT to_regclass('event_keys')") == [(None,)]
    database.upgrade()
    assert len(rows(database, "SELECT event_id FROM event_keys")) == len(times) + 2


def test_every_time_finds_a_partition_and_ids_stay_unique(database):
    database.upgrade()
    ingest = IngestService(Store(database))
    now = datetime.now(UTC)
    midnight = day(now) + timedelta(days=1)
    events = [
        ActivityEvent(
            "before-midnight", "u", ActivityType.API_CALL, midnight - timedelta.resolution
        ),
        ActivityEvent("at-midnight", "u", ActivityType.API_CALL, midnight),
        # Beyond the days made ahead, and long ago: made in the same transaction.
        ActivityEvent("in-ten-days", "u", ActivityType.API_CALL, now + timedelta(days=10)),
        ActivityEvent("long-ago", "u", ActivityType.API_CALL, datetime(2001, 3, 4, tzinfo=UTC)),
        ActivityEvent("twenty-days-ago", "u", ActivityType.API_CALL, now - timedelta(days=20)),
    ]
    try:
        assert stored(ingest, events) == [ACCEPTED] * 5
        placed = where(database)
        assert placed == {
            "before-midnight": f"events_p{now:%Y%m%d}",
            "at-midnight": f"events_p{midnight:%Y%m%d}",
            "in-ten-days": f"events_p{now + timedelta(days=10):%Y%m%d}",
            # Older than RECENT_DAYS: a month a partition.
            "long-ago": "events_p20010301",
            "twenty-days-ago": f"events_p{now - timedelta(days=20):%Y%m%d}",
        }
        (bound,) = rows(
            database,
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = :n",
            n="events_p20010301",
        )
        march, april = datetime(2001, 3, 1, tzinfo=UTC), datetime(2001, 4, 1, tzinfo=UTC)
        assert bound[0] == f"FOR VALUES FROM ('{to_us(march)}') TO ('{to_us(april)}')"
        # Every id once, whatever time it is sent again with.
        again = [ActivityEvent(e.event_id, "u", ActivityType.API_CALL, now) for e in events]
        assert stored(ingest, again + [ActivityEvent("new", "u", ActivityType.API_CALL, now)]) == (
            [DUPLICATE] * 5 + [ACCEPTED]
        )

        # Erasure takes the keys too: the same ids are new events afterwards.
        def forget(uow) -> int:
            return uow.retention.delete_user_events("u", None)

        assert ingest.run_exclusive(forget).result(timeout=60) == 6
        assert rows(database, "SELECT count(*) FROM event_keys") == [(0,)]
        assert stored(ingest, events[:1]) == [ACCEPTED]
    finally:
        ingest.close()


def test_expiry_drops_the_partitions_of_expired_days(database):
    database.upgrade()
    ingest = IngestService(Store(database))
    now = datetime.now(UTC)
    ages = {"five": 5, "four": 4, "one": 1, "today": 0}
    events = [
        ActivityEvent(f"{name}-{i}", f"u{i % 3}", ActivityType.API_CALL, now - timedelta(days=d))
        for name, d in ages.items()
        for i in range(50)
    ]
    try:
        assert stored(ingest, events) == [ACCEPTED] * 200
        old_days = {f"events_p{now - timedelta(days=d):%Y%m%d}" for d in (5, 4)}
        assert old_days <= set(where(database).values())
        policy = RetentionPolicy(events_days=2)
        housekeeping = EventPartitions(database)
        # Another server dropping partitions of this database: this one waits its turn.
        with database.engine.connect() as other:
            other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": partitions._DROP_KEY})
            assert housekeeping.drop_expired("events", policy.cutoff("events", now)) == 0
            other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": partitions._DROP_KEY})
            other.commit()
        assert old_days <= set(where(database).values())
        service = RetentionService(
            ingest, policy, lambda: now, housekeeping=housekeeping, min_pause=0.0
        )
        deleted = asyncio.run(service.run_once())
        assert deleted["events"] >= 100
        # Gone whole: the tables of the expired days no longer exist.
        assert (
            rows(
                database, "SELECT relname FROM pg_class WHERE relname = ANY(:n)", n=sorted(old_days)
            )
            == []
        )
        kept = {i for i in where(database)}
        assert kept == {e.event_id for e in events if not e.event_id.startswith(("five", "four"))}
        keys = {i for (i,) in rows(database, "SELECT event_id FROM event_keys")}
        assert keys == kept
        cutoff_hour = to_us(policy.cutoff("events", now)) // 3_600_000_000
        assert rows(
            database, "SELECT count(*) FROM event_rollup WHERE hour < :h", h=cutoff_hour
        ) == [(0,)]
        assert rows(database, "SELECT count(*) FROM user_hours WHERE hour < :h", h=cutoff_hour) == [
            (0,)
        ]
        # Nothing left to do; a young event is still a duplicate, an expired one is new again.
        assert not any(asyncio.run(service.run_once()).values())
        assert stored(ingest, [events[-1], events[0]]) == [DUPLICATE, ACCEPTED]
    finally:
        ingest.close()


def test_a_new_partition_fills_the_gap_it_is_in():
    now = to_us(datetime(2027, 3, 10, 12, tzinfo=UTC))
    days = [
        Partition("events_p20270305", to_us(datetime(2027, 3, 5, tzinfo=UTC)), now),
    ]
    # A recent day: that day.
    at = to_us(datetime(2027, 3, 1, 8, tzinfo=UTC))
    assert range_for(at, now, days) == (at // DAY_US * DAY_US, at // DAY_US * DAY_US + DAY_US)
    # February 2027, older than RECENT_DAYS: the month...
    feb = to_us(datetime(2027, 2, 1, tzinfo=UTC)), to_us(datetime(2027, 3, 1, tzinfo=UTC))
    assert range_for(to_us(datetime(2027, 2, 2, tzinfo=UTC)), now, days) == feb
    # ...cut short by a partition inside it, on either side.
    mid = [Partition("events_p20270210", to_us(datetime(2027, 2, 10, tzinfo=UTC)), feb[1])]
    assert range_for(to_us(datetime(2027, 2, 2, tzinfo=UTC)), now, mid) == (feb[0], mid[0].lower)
    legacy = [Partition("events_legacy", None, to_us(datetime(2027, 1, 20, tzinfo=UTC)))]
    assert range_for(to_us(datetime(2027, 1, 25, tzinfo=UTC)), now, legacy) == (
        legacy[0].upper,
        feb[0],
    )


def test_a_long_reader_delays_the_drop_but_never_ingest(database, monkeypatch):
    """A transaction that started before the detach (a pg_dump, a long
    report) keeps the expired partition until it ends; ingest goes on
    meanwhile, and the next pass finishes the half-done detach."""
    database.upgrade()
    ingest = IngestService(Store(database))
    now = datetime.now(UTC)
    old = [
        ActivityEvent(f"old-{i}", "u", ActivityType.API_CALL, now - timedelta(days=5))
        for i in range(30)
    ]
    housekeeping = EventPartitions(database)
    # As pg_dump reads: one snapshot for the whole transaction.
    reader = database.engine.connect().execution_options(isolation_level="REPEATABLE READ")
    try:
        assert stored(ingest, old) == [ACCEPTED] * 30
        with reader.begin():
            assert reader.execute(text("SELECT count(*) FROM events")).scalar_one() == 30
            monkeypatch.setattr(partitions, "DETACH_TIMEOUT", "300ms")
            assert housekeeping.drop_expired("events", day(now) - timedelta(days=2)) == 0
            # The reader still sees its snapshot; ingest is not held up.
            started = time.monotonic()
            assert stored(ingest, [ActivityEvent("new", "u", ActivityType.API_CALL, now)]) == [
                ACCEPTED
            ]
            assert time.monotonic() - started < 5
            assert reader.execute(text("SELECT count(*) FROM events")).scalar_one() == 30
        (pending,) = rows(database, "SELECT count(*) FROM pg_inherits WHERE inhdetachpending")
        assert pending == (1,)
        assert housekeeping.drop_expired("events", day(now) - timedelta(days=2)) == 30
        assert rows(database, "SELECT event_id FROM event_keys") == [("new",)]
        assert rows(database, "SELECT event_id FROM events") == [("new",)]
    finally:
        reader.close()
        ingest.close()
