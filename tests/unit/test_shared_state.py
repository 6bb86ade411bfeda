"""Detector windows survive a checkpoint: what a restarted server restores
from the saved JSON counts and distinguishes like the original."""

import json

from uba.domain.shared_state import SharedState


def test_windows_survive_a_json_round_trip():
    state = SharedState()
    ips = state.windows("failed_logins", window_seconds=600, max_keys=10, max_events_per_key=5)
    for i in range(8):  # more than max_events_per_key: the oldest are dropped
        ips.add("10.0.0.1", 1000.0 + i, f"user{i % 3}")
    ips.add("10.0.0.2", 1500.0, "alice")

    restored = SharedState.from_dict(json.loads(json.dumps(state.to_dict())))
    again = restored.windows("failed_logins", window_seconds=600)

    assert again.has_value("10.0.0.2", "alice", 1500.0)
    for now in (1010.0, 1599.0, 1603.0, 2101.0):
        assert again.count("10.0.0.1", now) == ips.count("10.0.0.1", now)
        assert again.distinct("10.0.0.1", now) == ips.distinct("10.0.0.1", now)
        assert again.count("10.0.0.2", now) == ips.count("10.0.0.2", now)
    assert restored.to_dict() == json.loads(json.dumps(state.to_dict()))
