"""Population aggregates shared by the user partitions of the event log's
workers (uba.domain.aggregates, docs/scaling.md), in-process: entries merged
in any order and any number of times give the windows one process would
have, partition rows leave them out, and two workers that exchange what
they add judge a scenario exactly as one embedded analyzer that sees every
user (and differently without the exchange)."""

from __future__ import annotations

import json
import random
import zlib
from datetime import UTC, datetime

import pytest
from support.scenario import peer_scenario

from uba.detectors.base import USER_SCOPE
from uba.detectors.engine import DetectionEngine
from uba.detectors.registry import DetectorRegistry
from uba.domain.aggregates import Aggregates, Delta
from uba.domain.alerts import AlertPolicy
from uba.domain.analysis import Analyzer
from uba.domain.ingest import GroupCommit
from uba.domain.peers import ALL, PeerActivity, aggregate_shape
from uba.domain.priors import SharedPriors
from uba.domain.risk import RiskPolicy
from uba.domain.shared_state import KeyedWindows, SharedState
from uba.storage.database import Database
from uba.storage.store import Store

DAY = 86400.0
NOW = datetime.now(UTC)


def test_insert_keeps_entries_in_time_order_so_they_expire_in_turn():
    windows = KeyedWindows(10.0, max_keys=10, max_events_per_key=3)
    windows.insert("k", 100.0, "late")
    windows.insert("k", 95.0, "early")  # out of order: placed before
    windows.insert("k", 103.0, "last")
    assert [v for _, v in windows.to_dict()["keys"]["k"]] == ["early", "late", "last"]
    assert windows.distinct("k", 106.0) == 2  # "early" (95) expired at 105
    windows.insert("k", 104.0, "more")  # the cap drops the oldest in time
    assert [v for _, v in windows.to_dict()["keys"]["k"]] == ["late", "last", "more"]
    assert windows.count("k", 104.0) == 3


class _Time(float):
    """A timestamp that counts the comparisons made with it."""

    compared = 0

    def __lt__(self, other):
        _Time.compared += 1
        return float.__lt__(self, other)

    def __gt__(self, other):
        _Time.compared += 1
        return float.__gt__(self, other)


def test_an_entry_older_than_a_full_key_finds_its_place_by_bisection():
    # A worker that merges entries older than most of a key's (it replays
    # the exchange at its start, after traffic out of time order) must not
    # walk the key's entries one by one for each: that made a starting
    # worker spend minutes merging before it stored anything.
    windows = KeyedWindows(30 * DAY, max_keys=10, max_events_per_key=5000)
    for i in range(5000):
        windows.insert("*", _Time(2000.0 + i), f"new{i}")
    _Time.compared = 0
    windows.insert("*", _Time(1000.0), "old")
    assert _Time.compared < 50
    entries = windows.to_dict()["keys"]["*"]
    assert entries[0] == (1000.0, "old") and len(entries) == 5000  # the cap kept the newest
    assert [ts for ts, _ in entries] == sorted(ts for ts, _ in entries)


def _peer_adds(shared: SharedState, seed: int) -> None:
    """What detectors add over 70 days, in time order (as a worker analyses
    a partition), users re-added once their entries expired."""
    rng = random.Random(seed)
    times = sorted(1_000_000.0 + rng.uniform(0, 70 * DAY) for _ in range(400))
    for i, ts in enumerate(times):
        activity = PeerActivity(shared, rng.choice(("endpoint", "country")))
        activity.observe(
            f"u{rng.randrange(40)}", rng.choice(("", "sales", "eng")), f"v{i % 7}", ts, i % 3 == 0
        )


def test_merging_in_any_order_and_twice_gives_the_same_windows():
    origin = Aggregates(aggregate_shape)
    _peer_adds(SharedState(origin), seed=1)
    deltas = origin.take()
    assert deltas and origin.take() == []  # taken once
    # What the origin added is what a plain SharedState holds for the same
    # calls: sharing changes where windows live, not what they count.
    plain = SharedState()
    _peer_adds(plain, seed=1)

    shuffled = list(deltas)
    random.Random(2).shuffle(shuffled)
    copies = []
    for order in (deltas, shuffled, list(reversed(deltas))):
        copy = Aggregates(aggregate_shape)
        copy.receive(order[: len(order) // 2])
        copy.receive(order)  # half of them twice
        copy.merge_received()
        assert copy.take() == []  # merged entries are not handed out again
        copies.append(copy)
    for name in {d.window for d in deltas}:
        span, max_keys, max_users = aggregate_shape(name)  # type: ignore[misc]
        windows = [c.windows(name, span, max_keys, max_users) for c in (origin, *copies)]
        reference = plain.windows(name, span, max_keys, max_users)
        for key in {d.key for d in deltas if d.window == name}:
            # Asked as detectors ask: at the time of the latest events.
            for now in (1_000_000.0 + d * DAY for d in (70, 75, 90, 101)):
                assert {w.distinct(key, now) for w in windows} == {reference.distinct(key, now)}, (
                    name,
                    key,
                    now,
                )
                for user in ("u1", "u7", "u30"):
                    assert {w.has_value(key, user, now) for w in windows} == {
                        reference.has_value(key, user, now)
                    }


def test_a_partition_row_leaves_the_aggregates_out_and_a_legacy_row_hands_them_over():
    aggregates = Aggregates(aggregate_shape)
    state = SharedState(aggregates)
    PeerActivity(state, "country").observe("alice", "sales", "FR", 1000.0, True)
    state.windows("failed_login_burst", 300.0).add("alice", 1000.0)
    saved = state.to_dict()
    assert list(saved) == ["failed_login_burst"]
    assert {d.window for d in aggregates.take()} == {
        "peers.country",
        "adopted.country",
        "peers.members",
    }

    # A row saved before the aggregates were shared: its peer windows join
    # the worker's aggregates, and go out as this worker's own additions.
    legacy = SharedState()
    PeerActivity(legacy, "country").observe("bob", "", "DE", 2000.0, False)
    fresh = Aggregates(aggregate_shape)
    restored = SharedState.from_dict(json.loads(json.dumps(legacy.to_dict())), fresh)
    assert restored.to_dict() == {}
    assert sorted(fresh.take()) == sorted(
        [
            Delta("peers.country", f"{ALL}\x1fDE", "bob", 2000.0),
            Delta("peers.members", ALL, "bob", 2000.0),
        ]
    )
    usage = PeerActivity(restored, "country").usage("carol", "", "DE", 2100.0)
    assert usage.population == 1 and usage.population_size == 1


def _engine() -> DetectionEngine:
    # The user detectors of the standard library (the learned ones need a
    # model or libraries and consult no peers).
    return DetectionEngine(DetectorRegistry(entry_points=False), {}, scope=USER_SCOPE)


def _findings(store: Store) -> list[tuple]:
    with store.database.read() as conn:
        return sorted(
            tuple(r)
            for r in conn.exec_driver_sql(
                "SELECT detector, user_id, severity, event_ids, reason FROM anomalies"
            ).all()
        )


def _store(tmp_path, name: str) -> Store:
    database = Database(f"sqlite:///{tmp_path}/{name}.db")
    database.upgrade()
    return Store(database)


def _worker_of(user_id: str) -> int:
    return zlib.crc32(user_id.encode()) % 4 // 2  # partitions 0, 1 and 2, 3


@pytest.mark.parametrize("exchange", [True, False])
def test_two_workers_that_exchange_aggregates_judge_as_one_process(tmp_path, exchange):
    _people, phases = peer_scenario(_worker_of)
    embedded = _store(tmp_path, "embedded")
    one = GroupCommit(embedded, Analyzer(_engine(), AlertPolicy(), RiskPolicy(), lambda: NOW), None)
    logged = _store(tmp_path, "log")
    workers = []
    for _ in range(2):
        analyzer = Analyzer(_engine(), AlertPolicy(), RiskPolicy(), lambda: NOW)
        aggregates = Aggregates(aggregate_shape)
        if exchange:  # the priors too, pooled in the log's order
            aggregates.priors = analyzer.prior = SharedPriors()
        analyzer.partition_state(
            lambda e: f"p{zlib.crc32(e.user_id.encode()) % 4}", aggregates if exchange else None
        )
        workers.append((aggregates, GroupCommit(logged, analyzer, None)))
    position = 0  # of the log the workers exchange through
    for phase in phases:
        for start in range(0, len(phase), 400):
            batch = phase[start : start + 400]
            one.commit(batch, NOW)
            for w, (_, commit) in enumerate(workers):
                mine = [e for e in batch if _worker_of(e.user_id) == w]
                if mine:
                    commit.commit(mine, NOW)
            # Deltas arrive a batch late (in flight), and in the end all of
            # them; shares of the priors come back to their sender too.
            for w, (aggregates, _) in enumerate(workers):
                position += 1
                shares = aggregates.take_shares()
                workers[1 - w][0].receive(aggregates.take(), (), shares, position)
                aggregates.receive((), (), shares, position)
    assert _findings(embedded)
    if exchange:
        assert _findings(logged) == _findings(embedded)
    else:  # each worker knows half the organisation: other severities
        assert {f[:4] for f in _findings(logged)} != {f[:4] for f in _findings(embedded)}


def test_an_erasure_reaches_the_other_workers_by_pseudonym():
    """The owner of an erased user's partition drops the user's entries and
    hands out the pseudonym only; the other workers find whose it is among
    the users they hold and drop theirs. Entries of the user that come
    after the erasure (new activity) are kept."""
    from functools import partial

    from uba.domain.erasure import pseudonym

    alias = pseudonym("secret", "alice")
    origin, other = Aggregates(aggregate_shape), Aggregates(aggregate_shape)
    other.pseudonym = partial(pseudonym, "secret")
    state = SharedState(origin)
    for user, ts in (("alice", 1000.0), ("bob", 1010.0)):
        PeerActivity(state, "country").observe(user, "sales", "FR", ts, True)
    other.receive(origin.take())
    origin.forget("alice", alias)
    assert origin.take_erased() == [alias]
    PeerActivity(state, "country").observe("alice", "sales", "DE", 2000.0, True)  # afterwards
    other.receive([], [alias])
    other.receive(origin.take())
    other.merge_received()
    shape = aggregate_shape("peers.country")
    assert shape is not None
    for aggregates in (origin, other):
        windows = aggregates.windows("peers.country", *shape)
        assert windows is not None
        assert not windows.has_value(f"{ALL}\x1fFR", "alice", 2000.0)
        assert windows.has_value(f"{ALL}\x1fFR", "bob", 2000.0)
        assert windows.has_value(f"{ALL}\x1fDE", "alice", 2000.0)
