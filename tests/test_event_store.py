"""The event store on its own: two writers storing the same events at once
(two server processes on one PostgreSQL) store each event exactly once."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from uba.domain.events import ActivityEvent, ActivityType
from uba.storage.database import Database
from uba.storage.events import EventRepository

pytestmark = pytest.mark.unit

pytestmark = pytest.mark.postgres


def _event(event_id: str) -> ActivityEvent:
    return ActivityEvent(
        event_id=event_id,
        user_id="alice",
        type=ActivityType.LOGIN_SUCCESS,
        occurred_at=datetime.now(UTC) - timedelta(minutes=1),
        source_ip="10.0.0.1",
    )


def test_a_concurrent_writer_storing_the_same_event_first_makes_it_a_duplicate(make_database_url):
    """Writer A stores X and holds its transaction open; writer B, which
    found X missing, tries X and Y and must wait for A. A commits: B stores
    only Y and reports X as not inserted by it, and nothing is lost."""
    database = Database(make_database_url("postgresql"))
    database.upgrade()
    now = datetime.now(UTC)
    try:
        with database.write() as first:
            assert EventRepository(first, database.backend).insert_new([_event("x")], now) == {"x"}
            result: dict = {}

            def second_writer() -> None:
                try:
                    with database.write() as second:
                        result["inserted"] = EventRepository(second, database.backend).insert_new(
                            [_event("x"), _event("y")], now
                        )
                except Exception as exc:  # noqa: BLE001 - the assertion below reports it
                    result["error"] = exc

            thread = threading.Thread(target=second_writer)
            thread.start()
            time.sleep(0.5)  # B is blocked on A's uncommitted index entry for x
            assert thread.is_alive(), f"the second writer did not wait for the first: {result}"
        thread.join(timeout=30)
        assert result == {"inserted": {"y"}}
        with database.read() as conn:
            rows = conn.exec_driver_sql(
                "SELECT event_id, count(*) FROM events GROUP BY event_id ORDER BY 1"
            ).all()
        assert [tuple(r) for r in rows] == [("x", 1), ("y", 1)]
    finally:
        database.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_rollups_count_every_event_and_each_user_once_per_hour(
    make_database_url, tmp_path, backend
):
    """The dashboard's hourly rollups, written in one statement per group:
    user ids with quotes, backslashes, commas, braces, spaces and non-ASCII
    letters are counted as themselves, and a second group adds to the
    counts of the first."""
    url = make_database_url(backend) or f"sqlite:///{tmp_path}/uba.db"
    database = Database(url)
    database.upgrade()
    hour = datetime(2026, 11, 24, 8, tzinfo=UTC)
    users = [
        "alice",
        'bob "the admin"',
        "c:\\users\\carol",
        "d,e",
        "{dave}",
        " erin ",
        "zoë",
        "NULL",
    ]
    first = [
        ActivityEvent(
            f"a{i}",
            users[i % len(users)],
            ActivityType.LOGIN_SUCCESS,
            hour + timedelta(minutes=i % 50),
        )
        for i in range(30)
    ]
    second = [
        ActivityEvent(
            f"b{i}", users[i % 3], ActivityType.API_CALL, hour + timedelta(minutes=70 + i)
        )
        for i in range(5)
    ] + [ActivityEvent("c0", "alice", ActivityType.LOGIN_SUCCESS, hour)]
    try:
        for group in (first, second):
            with database.write() as conn:
                EventRepository(conn, database.backend).add_to_rollups(group)
        with database.read() as conn:
            counts, distinct_users = EventRepository(conn, database.backend).window_counts(
                *_hours(hour, hour + timedelta(hours=1))
            )
            stored = {
                tuple(r) for r in conn.exec_driver_sql("SELECT hour, user_id FROM user_hours").all()
            }
        first_hour, next_hour = _hours(hour, hour + timedelta(hours=1))
        assert counts[first_hour] == {"login_success": 31}
        assert counts[next_hour] == {"api_call": 5}
        expected = {(first_hour, u) for u in users} | {(next_hour, u) for u in users[:3]}
        assert stored == expected
        assert distinct_users == len({u for _, u in expected})
    finally:
        database.dispose()


def _hours(*moments: datetime) -> tuple[int, ...]:
    return tuple(int(m.timestamp()) // 3600 for m in moments)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_baselines_round_trip_awkward_text_and_versions(make_database_url, tmp_path, backend):
    """Baselines are written as one statement per group (array literals on
    PostgreSQL): ids and JSON holding quotes, backslashes, braces and
    non-ASCII text come back as written, and a rewrite replaces the row."""
    from uba.storage.detection import DetectionRepository

    url = make_database_url(backend) or f"sqlite:///{tmp_path}/uba.db"
    database = Database(url)
    database.upgrade()
    now = datetime(2026, 11, 24, 8, tzinfo=UTC)
    data = {
        "user_id": 'bob "the admin"',
        "path": "c:\\users\\bob",
        "city": "Zürich",
        "set": "{a,b}",
    }
    try:
        with database.write() as conn:
            repository = DetectionRepository(conn, database.backend)
            assert repository.baseline_versions(['bob "the admin"', "c:\\x"]) == {}
            repository.save_baselines([('bob "the admin"', 1, data), ("c:\\x", 1, {"n": 1})], now)
        with database.write() as conn:
            repository = DetectionRepository(conn, database.backend)
            assert repository.baseline_versions(['bob "the admin"', "c:\\x", "nobody"]) == {
                'bob "the admin"': 1,
                "c:\\x": 1,
            }
            repository.save_baselines([("c:\\x", 2, {"n": 2})], now)
        with database.read() as conn:
            repository = DetectionRepository(conn, database.backend)
            assert repository.load_baselines(['bob "the admin"', "c:\\x"]) == {
                'bob "the admin"': (1, data),
                "c:\\x": (2, {"n": 2}),
            }
    finally:
        database.dispose()
