import uuid
from datetime import UTC, datetime, timedelta

from uba.domain.ids import new_uuid7, uuid7_time


def test_uuid7_has_version_variant_and_time():
    value = new_uuid7()
    parsed = uuid.UUID(value)
    assert len(value) == 36
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert abs(uuid7_time(value) - datetime.now(UTC)) < timedelta(seconds=5)


def test_uuid7_strictly_increasing_within_one_millisecond_and_across():
    ids = [new_uuid7(now_ms=1_800_000_000_000) for _ in range(5000)]
    ids += [new_uuid7() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
