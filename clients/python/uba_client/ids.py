"""Client-side event ids: UUIDv7 (RFC 9562), standard library only.

The client assigns the id before the first attempt, so a retry after a lost
reply carries the same id and the server stores the event once. UUIDv7 keeps
ids time-sortable, like the ids the server assigns itself.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = -1
_counter = 0


def new_event_id() -> str:
    """A new UUIDv7 string; strictly increasing within this process."""
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms <= _last_ms:
            # Same millisecond (or the clock stepped back): count on, so the
            # order holds; roll into the next millisecond when the 12-bit
            # counter is used up.
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:
                ms += 1
                _counter = secrets.randbits(11)
        else:
            _counter = secrets.randbits(11)
        _last_ms = ms
        counter = _counter
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | secrets.randbits(62)
    return str(uuid.UUID(int=value))
