"""Client-side event ids: UUIDv7 (RFC 9562).

The client assigns the id before the first attempt, so a retry after a lost
reply carries the same id and the server stores the event once. It is the
same generator the server uses for the ids it assigns (the client ships in
the same distribution), so both kinds of id sort by time alike.
"""

from __future__ import annotations

from uba.domain.ids import new_uuid7


def new_event_id() -> str:
    """A new UUIDv7 string; strictly increasing within this process."""
    return new_uuid7()
