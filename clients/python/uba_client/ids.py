"""Client-side event ids: UUIDv7 (RFC 9562), standard library only.

The client assigns the id before the first attempt, so a retry after a lost
reply carries the same id and the server stores the event once. The ids have
the same layout as the ids the server assigns (the Unix time in milliseconds
in the top 48 bits, then a 12-bit counter within the millisecond), so both
kinds sort by time alike. The client keeps its own generator so that it needs
nothing of the server but the contract (uba.v1).
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid

_MAX_COUNTER = 0xFFF
_lock = threading.Lock()
_last_ms = -1
_counter = 0


def new_event_id(now_ms: int | None = None) -> str:
    """A new UUIDv7 string; strictly increasing within this process."""
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000 if now_ms is None else int(now_ms)
    with _lock:
        if ms <= _last_ms:
            # Same (or an earlier, clock stepped back) millisecond: count on
            # from the last id so the order holds.
            ms = _last_ms
            _counter += 1
            if _counter > _MAX_COUNTER:
                ms += 1
                _counter = secrets.randbits(11)
        else:
            # Start below half the range, so there is room to count.
            _counter = secrets.randbits(11)
        _last_ms = ms
        counter = _counter
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | counter << 64
        | 0b10 << 62
        | secrets.randbits(62)
    )
    return str(uuid.UUID(int=value))
