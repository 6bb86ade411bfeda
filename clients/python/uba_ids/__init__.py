"""UUIDv7 identifiers (RFC 9562), standard library only, shared by the
server (event, anomaly, alert and incident ids) and the client library
(event ids assigned before the first attempt, so a retry is stored once):
one tiny package, so that the client needs nothing of the server.

UUIDv7 puts the Unix time in milliseconds in the top 48 bits, so ids sort
by creation time, which keeps B-tree inserts local and lets a reader guess
an anomaly's age from its id. Within one process the ids are strictly
increasing: the 12-bit `rand_a` field doubles as a counter inside the same
millisecond (RFC 9562, method 1).
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from datetime import UTC, datetime

_MAX_COUNTER = 0xFFF
_lock = threading.Lock()
_last_ms = -1
_counter = 0


def new_uuid7(now_ms: int | None = None) -> str:
    """A new UUIDv7 as its canonical 36-character string."""
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


def uuid7_time(value: str) -> datetime:
    """The creation time encoded in a UUIDv7 string (millisecond precision)."""
    parsed = uuid.UUID(value)
    if parsed.version != 7:
        raise ValueError(f"not a UUIDv7: {value}")
    return datetime.fromtimestamp((parsed.int >> 80) / 1000, tz=UTC)
