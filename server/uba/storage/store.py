"""The storage facade the domain talks to: each method is one transaction.

Domain services see plain Python objects only; SQLAlchemy stays in this
package.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from uba.domain.events import ActivityEvent, EventFilter
from uba.storage.database import Database
from uba.storage.events import EventKey, EventRepository


class Store:
    def __init__(self, database: Database):
        self.database = database
        self.backend = database.backend
        self.events = EventRepository(database.backend)

    # -- ingest ---------------------------------------------------------------

    def store_events(self, events: Sequence[ActivityEvent], received_at: datetime) -> tuple[set[str], dict[str, datetime]]:
        """Called by the ingest writer thread only (it holds one connection)."""
        with self.database.write_held() as conn:
            inserted = self.events.insert_new(conn, events, received_at)
            others = [e.event_id for e in events if e.event_id not in inserted]
            earlier = self.events.received_at(conn, others) if others else {}
        return inserted, earlier

    # -- reads ----------------------------------------------------------------

    def page_events(self, flt: EventFilter, limit: int, after: list[int] | None,
                    newest_first: bool) -> list[tuple[list[int], ActivityEvent]]:
        key = EventKey(*after) if after else None
        with self.database.read() as conn:
            rows = self.events.page(conn, flt, limit, key, newest_first)
        return [([k.occurred_at_us, k.id], e) for k, e in rows]

    def window_counts(self, start: datetime, end: datetime) -> tuple[dict[int, dict[str, int]], int]:
        with self.database.read() as conn:
            return self.events.window_counts(conn, start, end)

    def ping(self) -> None:
        """Raises when the database cannot be reached."""
        with self.database.read() as conn:
            conn.exec_driver_sql("SELECT 1")
