"""distribution_shift through the API of a real server: a user who drifts
for three weeks gets one finding per shifted test (and one more only when
it grows more severe), not a new one every day."""

from __future__ import annotations

import collections
import importlib.util
import math
import random
from datetime import timedelta

import pytest
from support.scenario import personas, send

from uba.testing.synthetic import HISTORY_DAYS, HISTORY_START
from uba.v1 import service_pb2

ML = all(importlib.util.find_spec(m) is not None for m in ("numpy", "scipy", "sklearn"))
pytestmark = pytest.mark.skipif(not ML, reason="distribution_shift needs numpy and scipy")


def drifted(p, start, days: int, rng: random.Random) -> list:
    """Every day an hour earlier than usual, six sessions twice as long."""
    events = []
    first = p.work_start - 1
    slot = (p.work_end - first) * 60 / 6
    for d in range(days):
        day = start + timedelta(days=d)
        for i in range(6):
            begin = first * 60 + i * slot + rng.uniform(0, slot / 3)
            minutes = min(2.2 * math.exp(rng.gauss(math.log(60), 0.3)), slot * 0.9)
            events += p.session(
                p.local(day, int(begin // 60), int(begin % 60), rng.randint(0, 59)),
                rng,
                rng.randint(5, 15),
                minutes,
            )
    return events


def test_three_weeks_of_drift_are_one_episode_per_test(stub):
    rng = random.Random(5)
    (p,) = personas(1, seed=41)
    send(stub, p.history(rng) + drifted(p, HISTORY_START + timedelta(days=HISTORY_DAYS), 21, rng))
    found = stub.ListAnomalies(
        service_pb2.ListAnomaliesRequest(
            user_id=p.user_id, detector="distribution_shift", page_size=1000
        )
    ).anomalies
    assert found, "the drift was not reported"
    per_test = collections.Counter(a.features[0].name for a in found)
    # At most a LOW and then a MEDIUM per test; daily repeats would be about 20.
    assert max(per_test.values()) <= 2, per_test
    for a in found:
        statistic = a.features[0].value
        assert math.isfinite(statistic) and statistic < 1e6 and math.isfinite(a.score)
