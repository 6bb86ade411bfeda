"""Training the Isolation Forest on stored history: on demand (the
TrainModel RPC, `uba train`) and on a schedule.

Training replays the stored events in time order with fresh baselines
(features as they were at the time), fits on a sample of mature users'
rows and switches the live detector to the new model in one step. It runs
on a storage thread, not the ingest writer, so ingest keeps flowing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from uba.domain.errors import FailedPrecondition, InvalidArgument
from uba.domain.events import ActivityEvent, EventFilter
from uba.domain.logs import EventReader, event_pages

DEFAULT_HISTORY = timedelta(days=30)
PAGE = 5000


class TrainingService:
    def __init__(self, reader: EventReader, detector: Any | None, clock: Callable[[], datetime],
                 unavailable_reason: str = ""):
        self._reader = reader
        # The live IsolationForestDetector, or None when it is not enabled.
        self._detector = detector
        self._clock = clock
        self._unavailable = unavailable_reason
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self._detector is not None

    def train(self, start: datetime | None = None, end: datetime | None = None):
        """Trains and switches to a new model; returns its ModelInfo."""
        if self._detector is None:
            raise FailedPrecondition(f"isolation_forest is not enabled: {self._unavailable or 'see GetCapabilities'}")
        end = end or self._clock()
        start = start or end - DEFAULT_HISTORY
        if end <= start:
            raise InvalidArgument.single("end_time", "must be after start_time")
        if not self._lock.acquire(blocking=False):
            raise FailedPrecondition("a training run is already in progress")
        try:
            return self._detector.train(self._history(EventFilter(start_time=start, end_time=end)))
        except ValueError as exc:  # not enough history
            raise FailedPrecondition(str(exc)) from None
        finally:
            self._lock.release()

    def _history(self, flt: EventFilter) -> Iterator[ActivityEvent]:
        for page in event_pages(self._reader, flt, PAGE):
            yield from page

    def model_missing(self) -> bool:
        return self._detector is not None and self._detector.model_info is None
