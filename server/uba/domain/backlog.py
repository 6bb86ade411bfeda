"""What a front end of the event log reports of the workers' backlog
(GetCapabilities, metrics; docs/scaling.md). Read from NATS by
uba.eventlog.status; plain data here so that the API and metrics layers
need no NATS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class EventLogStatus:
    partitions: int
    observed_at: datetime
    # Per partition, by number: events acknowledged and not yet stored.
    lag: tuple[int, ...] = ()
    live_workers: int = 0
    # When the oldest event not yet stored entered the log (None: none).
    oldest_at: datetime | None = None
    # Why the figures could not be read ('' when they were).
    unavailable_reason: str = ""

    @property
    def total_lag(self) -> int:
        return sum(self.lag)
