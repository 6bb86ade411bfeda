"""Backfill: rebuild baselines by replaying stored history through
detection, so a deployment that imported history (or changed its detector
configuration) starts from what its users normally do instead of blind.

The replay resets every baseline first (learning an event twice would
distort them), then feeds the stored events from `start` in time order, a
page at a time, through the ingest writer, which owns the baselines. Live
ingest keeps flowing meanwhile, interleaved page by page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from uba.domain.alerts import Alert
from uba.domain.analysis import Analyzer
from uba.domain.errors import FailedPrecondition, InvalidArgument
from uba.domain.events import EventFilter
from uba.domain.logs import EventReader, event_pages

PAGE = 2000
# Why a front end of the event log refuses a backfill (docs/scaling.md,
# "Backfill and imports").
BACKFILL_THROUGH_THE_LOG = (
    "Backfill is not available with --event-log: the workers that own the partitions learn "
    "the baselines, windows and priors, in the log's order, and a replay here would bypass "
    "them. Import history through the log instead (uba ingest, RecordActivities): the workers "
    "learn it in order as they store it (docs/scaling.md, 'Backfill and imports')"
)


class Writer(Protocol):
    def run_exclusive(self, action: Callable[[Any], Any]): ...


@dataclass(slots=True)
class BackfillResult:
    event_count: int = 0
    user_count: int = 0
    anomaly_count: int = 0
    alert_count: int = 0


class BackfillService:
    def __init__(
        self,
        reader: EventReader,
        writer: Writer,
        analyzer: Analyzer,
        clock: Callable[[], datetime],
        refusal: str = "",
    ):
        """`refusal`: why this process refuses to backfill ("": it does not)."""
        self._reader = reader
        self._writer = writer
        self._analyzer = analyzer
        self._clock = clock
        self._refusal = refusal

    def run(
        self,
        start: datetime | None,
        end: datetime | None,
        raise_alerts: bool,
        progress: Callable[[int], None] | None = None,
    ) -> BackfillResult:
        if self._refusal:
            raise FailedPrecondition(self._refusal)
        if start is None:
            raise InvalidArgument.single("start_time", "required: replay events from when?")
        if end is not None and end <= start:
            raise InvalidArgument.single("end_time", "must be after start_time")
        if start > self._clock():
            raise InvalidArgument.single("start_time", "is in the future")
        result = BackfillResult()
        users: set[str] = set()
        self._writer.run_exclusive(self._analyzer.reset).result()
        for events in event_pages(self._reader, EventFilter(start_time=start, end_time=end), PAGE):

            def replay(uow, events=events):
                alerts = self._analyzer.process(uow, events, raise_alerts=raise_alerts)
                return alerts, self._analyzer.last_anomaly_count

            alerts, anomalies = self._writer.run_exclusive(replay).result()
            result.event_count += len(events)
            result.anomaly_count += anomalies
            result.alert_count += sum(1 for a in alerts if isinstance(a, Alert))
            users.update(e.user_id for e in events)
            if progress is not None:
                progress(result.event_count)
        result.user_count = len(users)
        return result
