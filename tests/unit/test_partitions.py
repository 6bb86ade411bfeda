"""Detection by partition (docs/scaling.md), in-process on SQLite and
PostgreSQL: which detectors run where, population partitions analyse a
redelivered copy once, and each partition's detector windows have a state
row of their own."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

import pytest

from uba.detectors.base import POPULATION_SCOPE, USER_SCOPE
from uba.detectors.engine import DetectionEngine
from uba.detectors.registry import DetectorRegistry
from uba.domain.alerts import AlertPolicy
from uba.domain.analysis import Analyzer
from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.ingest import GroupCommit
from uba.domain.partitions import PopulationPartitions
from uba.domain.risk import RiskPolicy
from uba.storage.database import Database
from uba.storage.store import Store

FAILURE = ActivityType.LOGIN_FAILURE
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
RULES = {
    "threshold_rules": {
        "rules": [
            {"name": "per user", "type": "login_failure", "count": 3, "window_seconds": 60},
            {
                "name": "per address",
                "type": "login_failure",
                "count": 4,
                "window_seconds": 600,
                "group_by": "source_ip",
            },
        ]
    }
}


def registry() -> DetectorRegistry:
    return DetectorRegistry(entry_points=False)


def failure(n: int, user: str, ip: str) -> ActivityEvent:
    return ActivityEvent(
        event_id=f"ev-{n}",
        user_id=user,
        type=FAILURE,
        occurred_at=START + timedelta(seconds=10 * n),
        source_ip=ip,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path, make_database_url):
    url = make_database_url(request.param) or f"sqlite:///{tmp_path}/uba.db"
    database = Database(url)
    database.upgrade()
    yield Store(database)
    database.dispose()


def test_each_detector_runs_in_one_scope_and_rules_split_by_what_they_count():
    everything = {d.name for d in DetectionEngine(registry(), RULES).detectors}
    users = DetectionEngine(registry(), RULES, scope=USER_SCOPE)
    population = DetectionEngine(registry(), RULES, scope=POPULATION_SCOPE)
    population_names = {d.name for d in population.detectors}
    assert population_names == {"password_spraying", "credential_stuffing", "threshold_rules"}
    assert {d.name for d in users.detectors} == everything - population_names | {"threshold_rules"}
    (user_rules,) = [d for d in users.detectors if d.name == "threshold_rules"]
    (source_rules,) = [d for d in population.detectors if d.name == "threshold_rules"]
    assert [r["name"] for r in user_rules.rules] == ["per user"]
    assert [r["name"] for r in source_rules.rules] == ["per address"]
    assert users.learns_baselines and not population.learns_baselines
    # What a front end routes an event by: the address (spraying, rules by
    # address) and the organisation (credential stuffing).
    assert population.population_keys(failure(1, "alice", "192.0.2.7")) == {"192.0.2.7", ""}
    assert users.population_keys(failure(1, "alice", "192.0.2.7")) == set()
    with pytest.raises(ValueError, match="scope"):
        DetectionEngine(registry(), scope="team")
    scopes = {i.name: i.scope for i in registry().describe()}
    assert scopes["password_spraying"] == scopes["credential_stuffing"] == POPULATION_SCOPE
    assert scopes["failed_login_burst"] == USER_SCOPE


def population_analyzer(partition, accept, state_name):
    engine = DetectionEngine(registry(), RULES, scope=POPULATION_SCOPE, accept=accept)
    return Analyzer(
        engine,
        AlertPolicy(titles=engine.titles),
        RiskPolicy(),
        lambda: START,
        state_name=state_name,
    )


def rows(store: Store, sql: str) -> list[tuple]:
    with store.database.read() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql).all()]


def test_a_population_partition_analyses_a_redelivered_copy_once(store):
    partitions = 4
    ip = "198.51.100.7"

    def partition_of(key: str) -> int:
        return zlib.crc32(key.encode()) % partitions

    work = PopulationPartitions(store, population_analyzer, None, lambda: START)
    work.start(partition_of)
    # One address against six accounts: the rule by address (4) fires once.
    spray = [failure(i, f"user-{i}", ip) for i in range(6)]
    p = partition_of(ip)
    work.submit(p, spray[:3]).result()
    work.submit(p, spray).result()  # the first three again: a redelivery
    work.submit(p, spray[3:]).result()  # and once more
    found = rows(store, "SELECT detector, user_id, reason FROM anomalies ORDER BY id")
    by_address = [r for r in found if "per address" in r[2]]
    assert [r[1] for r in by_address] == ["user-3"], found
    # The organisation's key falls elsewhere (unless it shares the
    # partition): credential stuffing sees these copies only there.
    assert partition_of("") == p or all(r[0] != "credential_stuffing" for r in found)
    work.release(p).result()
    names = [r[0] for r in rows(store, "SELECT name FROM state ORDER BY name")]
    assert f"detector_windows.population.{p}" in names
    assert "priors" not in names and "detector_windows" not in names
    # The baselines are the user partitions': read here, never written.
    assert rows(store, "SELECT count(*) FROM baselines") == [(0,)]
    work.close()


def test_user_partitions_keep_their_windows_in_rows_of_their_own(store):
    """Two workers, each owning one partition, checkpoint their windows: each
    partition's row holds its own users, and neither overwrote the other."""

    def worker() -> tuple[Analyzer, GroupCommit]:
        engine = DetectionEngine(registry(), RULES, scope=USER_SCOPE)
        analyzer = Analyzer(engine, AlertPolicy(), RiskPolicy(), lambda: START)
        analyzer.partition_state(lambda e: "p0" if e.user_id == "alice" else "p1")
        return analyzer, GroupCommit(store, analyzer, None)

    (first, commit_first), (second, commit_second) = worker(), worker()
    commit_first.commit([failure(1, "alice", "192.0.2.1")], START)
    commit_second.commit([failure(2, "bob", "192.0.2.2")], START)
    for analyzer in (first, second):
        with store.unit_of_work() as uow:
            analyzer.checkpoint(uow, force=True)
    state = {
        name: data
        for name, data in rows(store, "SELECT name, data FROM state")
        if name.startswith("detector_windows")
    }
    assert sorted(state) == ["detector_windows.p0", "detector_windows.p1"]
    assert '"alice"' in state["detector_windows.p0"] and '"bob"' not in state["detector_windows.p0"]
    assert '"bob"' in state["detector_windows.p1"]
