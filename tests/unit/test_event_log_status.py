"""Reading NATS's times for the event log's lag (uba.eventlog.status)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

pytest.importorskip("nats", reason="nats-py (the eventlog extra) is not installed")

from uba.eventlog.status import parse_time  # noqa: E402


def test_nats_times_keep_microseconds_and_their_zone():
    assert parse_time("2026-12-06T14:13:23.022873099Z") == datetime(
        2026, 12, 6, 14, 13, 23, 22873, tzinfo=UTC
    )
    assert parse_time("2026-12-06T15:13:23.5+01:00") == datetime(
        2026, 12, 6, 14, 13, 23, 500000, tzinfo=UTC
    )
    assert parse_time("2026-12-06T14:13:23Z") == datetime(2026, 12, 6, 14, 13, 23, tzinfo=UTC)
    assert parse_time("0001-01-01T00:00:00Z") == datetime(1, 1, 1, tzinfo=UTC)
    assert parse_time("") is None and parse_time("yesterday") is None
