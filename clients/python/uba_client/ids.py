"""Client-side event ids: UUIDv7 (RFC 9562), from the shared uba_ids
package (standard library only).

The client assigns the id before the first attempt, so a retry after a lost
reply carries the same id and the server stores the event once. The ids have
the same layout as the ids the server assigns, so both kinds sort by time
alike.
"""

from __future__ import annotations

from uba_ids import new_uuid7


def new_event_id(now_ms: int | None = None) -> str:
    """A new UUIDv7 string; strictly increasing within this process."""
    return new_uuid7(now_ms)
