"""Testing and evaluation tools: a seeded, labelled population of users
(scenario), the attacks staged in it (attacks), and the scoring of a
server's findings against the labels (score).

One generator serves `uba demo`, `uba evaluate`, tests and benchmarks. It
yields domain ActivityEvents (no protobuf); `uba evaluate` converts and
sends them through the public API.

    from uba.evaluation import generate
    scenario = generate(users=200, days=42, seed=7)
    scenario.events        # ActivityEvent list, oldest first
    scenario.attacks       # Label per staged attack
    scenario.confounders   # Label per benign change that looks new
"""

from uba.evaluation.scenario import DEFAULT_END, Scenario, generate
from uba.evaluation.score import Finding, Label

__all__ = ["DEFAULT_END", "Finding", "Label", "Scenario", "generate"]
