"""TrainingService with several processes on one database: one trains at
a time (the shared training lock), and a model another process trained,
loaded before the due check, makes training no longer due."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from uba.domain.errors import FailedPrecondition
from uba.domain.training import TrainingService

NEWEST = datetime(2026, 11, 1, 12, tzinfo=UTC)
OLDEST = NEWEST - timedelta(days=40)


class Reader:
    def page_events(self, flt, limit, after, newest_first):
        at = NEWEST if newest_first else OLDEST
        return [([1], SimpleNamespace(occurred_at=at))]


class Forest:
    """The detector's side: `stored` is the newest model in the shared store."""

    def __init__(self):
        self.model_info = None
        self.stored = None
        self.trained = 0

    def refresh(self):
        if self.stored is not None:
            self.model_info = self.stored

    def train(self, events):
        self.trained += 1
        self.model_info = self.stored = SimpleNamespace(
            window_start=OLDEST.isoformat(), window_end=NEWEST.isoformat(), created_at="x"
        )
        return self.model_info


def service(forest, free=True):
    return TrainingService(Reader(), forest, lambda: NEWEST, shared_lock=lambda: nullcontext(free))


def test_no_training_while_another_process_trains():
    forest = Forest()
    busy = service(forest, free=False)
    assert busy.scheduled(timedelta(hours=24)) is None
    with pytest.raises(FailedPrecondition, match="already in progress"):
        busy.train()
    assert forest.trained == 0
    reason, _info = service(forest).scheduled(timedelta(hours=24))
    assert reason == "no model yet" and forest.trained == 1


def test_a_model_another_process_trained_makes_training_not_due():
    other = Forest()
    service(other).scheduled(timedelta(hours=24))
    here = Forest()
    here.stored = other.stored  # the database, shared
    assert service(here).scheduled(timedelta(hours=24)) is None
    assert here.trained == 0 and here.model_info is other.stored
