"""The client's event ids have the server's UUIDv7 layout: the server reads
their time back, and they sort by creation like the server's own ids."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from uba.domain.ids import uuid7_time
from uba_client.ids import new_event_id


def test_client_ids_are_uuid7_the_server_reads_the_time_of():
    value = new_event_id()
    parsed = uuid.UUID(value)
    assert str(parsed) == value
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert abs(uuid7_time(value) - datetime.now(UTC)) < timedelta(seconds=5)


def test_client_ids_increase_strictly_even_within_one_millisecond():
    # One millisecond held still (a present one, so later ids in this
    # process are not pushed into the future), then the clock again.
    now_ms = time.time_ns() // 1_000_000
    ids = [new_event_id(now_ms=now_ms) for _ in range(5000)]
    ids += [new_event_id() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert uuid7_time(ids[0]) >= datetime.fromtimestamp(now_ms / 1000, UTC)
