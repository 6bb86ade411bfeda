"""The demo population with labelled attacks, for `uba demo` and tests:
a thin front of uba.evaluation's generator (one generator for the demo,
tests, benchmarks and `uba evaluate`) that ends the period at now.

    sim = simulate(users=20, days=21, seed=7, attacks=True)
    sim.events    # ActivityEvent list, oldest first, none after `end`
    sim.attacks   # Label per attack: kind, detectors, users, start, event ids
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from uba.evaluation.attacks import BLATANT as ATTACK_KINDS
from uba.evaluation.scenario import Scenario, generate

__all__ = ["ATTACK_KINDS", "simulate"]


def simulate(
    users: int = 20,
    days: int = 21,
    seed: int = 7,
    attacks: bool = False,
    end: datetime | None = None,
) -> Scenario:
    """`days` of activity ending at `end` (default: now); with `attacks`, the
    blatant attacks in its last 12 hours and the realistic ones after the
    first 60% of the period. Same arguments, same events and ids."""
    end = (end or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    return generate(
        users, days, seed, end=end, attacks=attacks, blatant_window=(end - timedelta(hours=12), end)
    )
