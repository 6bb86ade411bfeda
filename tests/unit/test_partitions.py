"""Detection by partition (docs/scaling.md), in-process on SQLite and
PostgreSQL: which detectors run where, population partitions analyse a
redelivered copy once, each partition's detector windows have a state row
of their own, erasures from the log are applied once in their place and
keep what came before them erased, and the shared priors pool each share
once."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

import pytest

from uba.detectors.base import POPULATION_SCOPE, USER_SCOPE
from uba.detectors.engine import DetectionEngine
from uba.detectors.registry import DetectorRegistry
from uba.domain.alerts import AlertPolicy
from uba.domain.analysis import Analyzer
from uba.domain.erasure import ErasureRequest
from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.ingest import GroupCommit, IngestService
from uba.domain.partitions import PopulationPartitions, UserPartitions
from uba.domain.risk import RiskPolicy
from uba.storage.database import Database
from uba.storage.store import Store

FAILURE = ActivityType.LOGIN_FAILURE
LOGIN = ActivityType.LOGIN_SUCCESS
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


def test_an_erasure_from_the_log_is_applied_once_and_what_came_before_stays_erased(store):
    """A user partition applies an erasure in its place: the user's events
    and windows go (the partition's row is saved without them), a second
    delivery of the erasure changes nothing (not even the events stored
    since), and the user's events from before it, delivered again, are
    dropped while a later copy (a client's retry) is stored."""
    engine = DetectionEngine(registry(), RULES, scope=USER_SCOPE)
    analyzer = Analyzer(engine, AlertPolicy(), RiskPolicy(), lambda: START)
    ingest = IngestService(store, analyzer)
    users = UserPartitions(ingest, analyzer, lambda: START)
    try:
        users.prepare().result()
        users.start(lambda user: 0 if user == "alice" else 1)
        users.submit(0, [failure(i, "alice", "192.0.2.1") for i in range(3)], [1, 2, 3]).result()
        users.submit(1, [failure(9, "bob", "192.0.2.2")], [4]).result()
        request = ErasureRequest("er-1", "alice", "admin", "test")
        report = users.erase(0, request, 5).result()
        assert report.events_deleted == 3 and report.pseudonym.startswith("erased_")
        later = failure(20, "alice", "192.0.2.1")
        users.submit(0, [later], [6]).result()
        assert users.erase(0, request, 5).result() == report  # delivered again: as before
        users.submit(0, [failure(1, "alice", "192.0.2.1")], [2]).result()  # from before it
        users.submit(0, [failure(2, "alice", "192.0.2.1")], [7]).result()  # sent again after
        stored = rows(store, "SELECT event_id FROM events WHERE user_id = 'alice' ORDER BY 1")
        assert stored == [("ev-2",), ("ev-20",)]
        assert rows(store, "SELECT scope, position FROM erasures") == [("p0", 5)]
        # Saved in the erasure's transaction (the clock stands still: not since).
        (saved,) = rows(store, "SELECT data FROM state WHERE name = 'detector_windows.p0'")
        assert '"alice"' not in saved[0] and "failed_login_burst" in saved[0]
        assert users.tombstones.dropped == 1
    finally:
        users.close()
        ingest.close()


def test_a_population_partition_forgets_an_erased_user_and_rewrites_its_findings(store):
    partitions = 4
    ip = "198.51.100.9"

    def partition_of(key: str) -> int:
        return zlib.crc32(key.encode()) % partitions

    work = PopulationPartitions(store, population_analyzer, None, lambda: START)
    work.start(partition_of)
    p = partition_of(ip)
    spray = [failure(i, f"user-{i}", ip) for i in range(4)]
    work.submit(p, spray, [1, 2, 3, 4]).result()
    assert rows(store, "SELECT user_id FROM anomalies") == [("user-3",)]  # the rule by address
    work.erase(p, ErasureRequest("er-2", "user-3"), 5).result()
    (alias,) = rows(store, "SELECT user_id FROM anomalies")
    assert alias[0].startswith("erased_")
    (saved,) = rows(store, f"SELECT data FROM state WHERE name = 'detector_windows.population.{p}'")
    assert '"user-3"' not in saved[0] and '"user-2"' in saved[0]
    # A copy from before the erasure, delivered again, is not analysed.
    work.submit(p, [failure(3, "user-3", ip)], [4]).result()
    work.release(p).result()
    (saved,) = rows(store, f"SELECT data FROM state WHERE name = 'detector_windows.population.{p}'")
    assert '"user-3"' not in saved[0]
    assert rows(store, "SELECT scope FROM erasures") == [(f"population.{p}",)]
    work.close()


def test_shared_priors_pool_shares_once_in_the_logs_order():
    from uba.domain.aggregates import Aggregates
    from uba.domain.peers import aggregate_shape
    from uba.domain.priors import Contribution, PriorBaselines, SharedPriors
    from uba.domain.user_baseline import UserBaseline

    baselines = []
    for i in range(3):
        baseline = UserBaseline(f"u{i}", peer_group="eng")
        for day in range(20):
            at = START - timedelta(days=day, hours=i)
            baseline.learn(
                ActivityEvent(event_id=f"e{i}-{day}", user_id=f"u{i}", type=LOGIN, occurred_at=at)
            )
        baselines.append(baseline)
    one = PriorBaselines()
    for baseline in baselines:
        one.include(baseline)
    shared = SharedPriors()
    for baseline in baselines:
        shared.include(baseline)  # not pooled here: sent out
    assert shared.population.user_count == 0
    shares = [Contribution.from_list(s.to_list()) for s in shared.take()]
    shared.absorb(7, shares[:2])
    shared.absorb(7, shares[:2])  # the same position again: once
    shared.absorb(9, shares[2:])
    assert PriorBaselines.to_dict(shared) == one.to_dict() and shared.position == 9
    restored = SharedPriors.from_dict(shared.to_dict())
    assert restored == shared and restored.position == 9
    # Saved as of a stream deleted since: the positions start again.
    aggregates = Aggregates(aggregate_shape, restored)
    aggregates.positions_end(20)
    assert restored.position == 9
    aggregates.positions_end(3)
    assert restored.position == 0 and PriorBaselines.to_dict(restored) == one.to_dict()


def test_forget_on_a_front_end_answers_once_every_partition_applied_it():
    """ForgetUser with the event log: the sum of the partitions' reports
    once all applied it; UNAVAILABLE, saying the erasure is on its way,
    when they do not in time; the id is checked before anything is sent."""
    from concurrent.futures import Future

    from uba.domain.erasure import ErasureReport, LoggedErasureService
    from uba.domain.errors import InvalidArgument, Unavailable

    sent: list[ErasureRequest] = []
    applied: dict[str, list[ErasureReport]] = {}

    class Log:
        def erase(self, request: ErasureRequest) -> Future:
            sent.append(request)
            done: Future = Future()
            done.set_result(3)  # the user's partition and two population ones
            return done

    class Progress:
        def erasure_reports(self, erasure_id: str) -> list[ErasureReport]:
            return applied.get(erasure_id, [])

    service = LoggedErasureService(Log(), Progress(), wait=0.3, poll=0.01)
    with pytest.raises(Unavailable, match=r"in the event log .* applied in 0 of its 3"):
        service.forget("alice", "admin", "127.0.0.1")
    assert [(r.user_id, r.actor, r.peer) for r in sent] == [("alice", "admin", "127.0.0.1")]
    with pytest.raises(InvalidArgument):
        service.forget("erased_0123")
    assert len(sent) == 1

    class Applying(Progress):
        def erasure_reports(self, erasure_id: str) -> list[ErasureReport]:
            return [
                ErasureReport("erased_x", 4, 2, 3),
                ErasureReport("erased_x", 0, 0, 1),
                ErasureReport("erased_x", 0, 0, 0),
            ]

    report = LoggedErasureService(Log(), Applying(), wait=5).forget("alice")
    assert report == ErasureReport("erased_x", 4, 2, 4)
