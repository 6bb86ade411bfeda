"""The Isolation Forest's training rows: stored history replayed through
fresh baselines and feature windows, so each row has the features the live
detector would have computed at the time. numpy is imported when called."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from uba.detectors.features import FEATURE_NAMES, event_features, observe
from uba.domain.events import ActivityEvent
from uba.domain.shared_state import SharedState
from uba.domain.user_baseline import DEFAULT_MATURITY, MaturityPolicy, UserBaseline


def replay_rows(
    events: Iterable[ActivityEvent],
    max_rows: int = 200_000,
    *,
    require_mature: bool = True,
    maturity: MaturityPolicy = DEFAULT_MATURITY,
    seed: int = 0,
) -> tuple[Any, dict[str, Any]]:
    """Replays history (events of all users in time order) through fresh
    baselines and feature windows, and returns a uniform sample of at most
    `max_rows` feature rows (float32 array; reservoir sampling keeps memory
    bounded whatever the history's length) and facts about the replay.

    Every event is learned: the history is taken as normal. Leave out
    events of alerts resolved as true positives before calling this."""
    import numpy as np

    rng = random.Random(seed)
    rows = np.empty((max_rows, len(FEATURE_NAMES)), dtype=np.float32)
    baselines: dict[str, UserBaseline] = {}
    shared = SharedState()
    seen = events_count = 0
    first_ts = last_ts = None
    for event in events:
        events_count += 1
        baseline = baselines.get(event.user_id)
        if baseline is None:
            baseline = baselines[event.user_id] = UserBaseline(event.user_id, maturity=maturity)
        event = baseline.as_seen(event)
        clock = baseline.clock(event)
        if first_ts is None or clock.ts < first_ts:
            first_ts = clock.ts
        if last_ts is None or clock.ts > last_ts:
            last_ts = clock.ts
        if baseline.mature or not require_mature:
            row = event_features(event, baseline, shared, clock)
            if seen < max_rows:
                rows[seen] = row
            else:
                slot = rng.randrange(seen + 1)
                if slot < max_rows:
                    rows[slot] = row
            seen += 1
        baseline.learn(event, clock)
        observe(event, shared, clock)
    facts = {
        "events": events_count,
        "candidate_rows": seen,
        "users": len(baselines),
        "first_ts": first_ts,
        "last_ts": last_ts,
    }
    return rows[: min(seen, max_rows)], facts
