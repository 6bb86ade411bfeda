"""Training the Isolation Forest on stored history: on demand (the
TrainModel RPC, `uba train`) and on a schedule.

Training replays the stored events in time order with fresh baselines
(features as they were at the time), fits on a sample of mature users'
rows and switches the live detector to the new model in one step. It runs
on a storage thread, not the ingest writer, so ingest keeps flowing.

The window is the latest stored data by event time: the 30 days before the
newest stored occurred_at, not before the wall clock, so a deployment that
imported its history trains on it.

When the schedule trains (`due`): there is no model yet; or the newest
stored event is a train interval (event time) past the model's window; or
older history has been stored since the model, widening the window's data
by a day or more (an import, after which a Backfill usually follows). Two
indexed look-ups per check; after a failed attempt (too little history)
the next one waits until the stored span changes.

Several processes on one database (the front ends of the event log) share
the models (stored in the database) and each runs the schedule. One trains
at a time: `train` takes the deployment's training lock (a PostgreSQL
advisory lock; see uba.storage.trained_models) and refuses when another
process holds it, and the schedule first loads the newest stored model,
so that a model another process trained makes training no longer due.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, nullcontext
from datetime import datetime, timedelta
from typing import Any

from uba.domain.errors import FailedPrecondition, InvalidArgument
from uba.domain.events import ActivityEvent, EventFilter
from uba.domain.logs import EventReader, event_pages

DEFAULT_HISTORY = timedelta(days=30)
PAGE = 5000
# Older history that widens the window by this much calls for a new model.
WIDER_BY = timedelta(days=1)
_TICK = timedelta(microseconds=1)  # end_time is exclusive

# Enters with whether this process may train now (no other process is).
TrainingLock = Callable[[], AbstractContextManager[bool]]


def _no_lock() -> AbstractContextManager[bool]:
    return nullcontext(True)


class TrainingService:
    def __init__(
        self,
        reader: EventReader,
        detector: Any | None,
        clock: Callable[[], datetime],
        unavailable_reason: str = "",
        shared_lock: TrainingLock = _no_lock,
    ):
        self._reader = reader
        # Held by one process of the deployment while it trains.
        self._shared_lock = shared_lock
        # The live IsolationForestDetector, or None when it is not enabled.
        self._detector = detector
        self._clock = clock
        self._unavailable = unavailable_reason
        self._lock = threading.Lock()
        # (newest, oldest) stored occurred_at at the last `due` check, and at
        # the last scheduled attempt that failed (too little history).
        self._pending_span: tuple[datetime, datetime] | None = None
        self._failed_span: tuple[datetime, datetime] | None = None
        # Told each run's duration in seconds and whether it made a model
        # (the metrics).
        self.on_trained: Callable[[float, bool], None] | None = None

    def model_created_at(self) -> str | None:
        """When the model in use was trained (ISO 8601 UTC), or None."""
        info = self._detector.model_info if self._detector is not None else None
        return info.created_at if info is not None else None

    @property
    def available(self) -> bool:
        return self._detector is not None

    def train(self, start: datetime | None = None, end: datetime | None = None):
        """Trains and switches to a new model; returns its ModelInfo."""
        if self._detector is None:
            raise FailedPrecondition(
                f"isolation_forest is not enabled: {self._unavailable or 'see GetCapabilities'}"
            )
        if end is None:
            newest = self._edge(newest=True)
            if newest is None:
                raise FailedPrecondition("no stored events to train on")
            end = newest + _TICK
        start = start or end - DEFAULT_HISTORY
        if end <= start:
            raise InvalidArgument.single("end_time", "must be after start_time")
        with ExitStack() as held:
            if not self._hold(held):
                raise FailedPrecondition("a training run is already in progress")
            return self._train(start, end)

    def _hold(self, stack: ExitStack) -> bool:
        """Takes this process's and the deployment's training locks (onto
        `stack`); False when either is held."""
        if not self._lock.acquire(blocking=False):
            return False
        stack.callback(self._lock.release)
        return stack.enter_context(self._shared_lock())

    def _train(self, start: datetime, end: datetime):
        assert self._detector is not None  # checked by the callers
        started, ok = time.monotonic(), False
        try:
            info = self._detector.train(self._history(EventFilter(start_time=start, end_time=end)))
            ok = True
            return info
        except ValueError as exc:  # not enough history
            raise FailedPrecondition(str(exc)) from None
        finally:
            if self.on_trained is not None:
                self.on_trained(time.monotonic() - started, ok)

    def _history(self, flt: EventFilter) -> Iterator[ActivityEvent]:
        for page in event_pages(self._reader, flt, PAGE):
            yield from page

    def model_missing(self) -> bool:
        return self._detector is not None and self._detector.model_info is None

    def _edge(self, newest: bool) -> datetime | None:
        """occurred_at of the newest (or oldest) stored event."""
        rows = self._reader.page_events(EventFilter(), 1, None, newest_first=newest)
        return rows[0][1].occurred_at if rows else None

    def due(self, interval: timedelta) -> str:
        """Why the schedule should train now ("" when it need not): see the
        module docstring."""
        if self._detector is None:
            return ""
        # A model another process trained since (stored in the database).
        self._detector.refresh()
        newest, oldest = self._edge(newest=True), self._edge(newest=False)
        if newest is None or oldest is None:
            return ""
        span = (newest, oldest)
        if span == self._failed_span:
            return ""  # nothing stored since the last attempt failed
        covered_from = max(oldest, newest - DEFAULT_HISTORY)
        info = self._detector.model_info
        if info is None:
            reason = "no model yet"
        elif not info.window_end or not info.window_start:
            reason = ""
        elif newest - datetime.fromisoformat(info.window_end) >= interval:
            reason = (
                f"events up to {newest:%Y-%m-%d %H:%M} UTC, the model's end at {info.window_end}"
            )
        elif datetime.fromisoformat(info.window_start) - covered_from >= WIDER_BY:
            reason = f"older history stored since the model (from {covered_from:%Y-%m-%d} UTC)"
        else:
            reason = ""
        self._pending_span = span
        return reason

    def scheduled(self, interval: timedelta):
        """Trains if `due`; returns (reason, ModelInfo) or None (also when
        another training run is in progress, here or in another process).
        Checked under the training locks, so that a process that waited
        for another's run sees its model."""
        if self._detector is None:
            return None
        with ExitStack() as held:
            if not self._hold(held):
                return None
            reason = self.due(interval)
            if not reason:
                return None
            newest = self._edge(newest=True)
            if newest is None:
                return None
            end = newest + _TICK
            try:
                return reason, self._train(end - DEFAULT_HISTORY, end)
            except FailedPrecondition:
                self._failed_span = self._pending_span
                raise
