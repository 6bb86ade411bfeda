"""Schema migrations run on SQLite and PostgreSQL from one tree, and data
migrations carry existing rows forward (the hourly rollups of 0004)."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from uba.storage.database import MIGRATIONS, Database

HOUR_US = 3_600_000_000


def upgrade_to(database: Database, revision: str) -> None:
    with database.engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_rollups_are_built_from_events_stored_before_them(backend, tmp_path, make_database_url):
    url = make_database_url(backend) or f"sqlite:///{tmp_path}/old.db"
    database = Database(url)
    try:
        upgrade_to(database, "0003")
        with database.engine.begin() as conn:
            for i, (user, type_, hour) in enumerate(
                [
                    ("a", "login_success", 10),
                    ("a", "api_call", 10),
                    ("b", "api_call", 10),
                    ("a", "api_call", 11),
                ]
            ):
                conn.execute(
                    text(
                        "INSERT INTO events (event_id, user_id, type, occurred_at_us, "
                        "received_at_us, source_ip, user_agent, device_id, session_id, "
                        "country_code, city, timezone, peer_group, api_method, api_path, "
                        "status_code, bytes_transferred, source) VALUES (:id, :u, :t, :at, :at, "
                        "'', '', '', '', '', '', '', '', '', '', 0, 0, '')"
                    ),
                    {"id": f"e{i}", "u": user, "t": type_, "at": hour * HOUR_US + i},
                )
        database.upgrade()
        assert database.current_revision() == Database.head_revision()
        with database.engine.connect() as conn:
            rollup = sorted(conn.execute(text("SELECT hour, type, count FROM event_rollup")).all())
            users = sorted(conn.execute(text("SELECT hour, user_id FROM user_hours")).all())
        assert [tuple(r) for r in rollup] == [
            (10, "api_call", 2),
            (10, "login_success", 1),
            (11, "api_call", 1),
        ]
        assert [tuple(r) for r in users] == [(10, "a"), (10, "b"), (11, "a")]
    finally:
        database.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_incidents_migration_keeps_alerts_and_anomalies_stored_before_it(
    backend, tmp_path, make_database_url
):
    from uba.storage.detection import DetectionRepository
    from uba.storage.incidents import IncidentRepository

    url = make_database_url(backend) or f"sqlite:///{tmp_path}/old.db"
    database = Database(url)
    try:
        upgrade_to(database, "0004")
        with database.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO anomalies (anomaly_id, user_id, detector, detector_version, "
                    "score, severity, event_ids, reason, observed, expected, "
                    "baseline_observations, baseline_mature, features, occurred_at_us, "
                    "detected_at_us, alert_id, quarantined) VALUES ('an1', 'old', 'new_country', "
                    "'1.0', 1.0, 2, '[\"e1\"]', 'r', 'o', 'x', 40, 1, '[]', 5, 6, 'al1', 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO alerts (alert_id, seq, user_id, detector, severity, status, "
                    "title, reason, anomaly_ids, anomaly_count, user_risk, first_seen_at_us, "
                    "last_seen_at_us, created_at_us, updated_at_us, acknowledged_by, resolved_by, "
                    "resolution, note) VALUES ('al1', 7, 'old', 'new_country', 2, 'open', 't', "
                    "'r', '[\"an1\"]', 1, 10, 5, 5, 6, 6, '', '', '', '')"
                )
            )
        database.upgrade()
        assert database.current_revision() == Database.head_revision()
        with database.engine.connect() as conn:
            detection = DetectionRepository(conn, database.backend)
            incidents = IncidentRepository(conn, database.backend)
            alert = detection.alert("al1")
            (anomaly,) = detection.anomalies_of_alert("al1")
            assert (alert.tactics, alert.techniques, alert.incident_id) == ([], [], "")
            assert (anomaly.tactics, anomaly.techniques) == ([], [])
            assert incidents.max_seq() == 0 and incidents.incidents_of_alert("al1") == []
    finally:
        database.dispose()
