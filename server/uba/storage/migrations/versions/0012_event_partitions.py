"""events partitioned by time on PostgreSQL; idempotency keys in event_keys

Retention then drops a whole day of events at once instead of deleting its
rows (uba.storage.partitions). A unique index on a partitioned table must
contain the partition key, and `event_id` alone is the idempotency key (an
event sent again with the same id is a duplicate whatever its time), so the
keys move to a table of their own, `event_keys` (event_id -> when the event
occurred and was first received), which ingest inserts into first.

The existing table is not copied: it is renamed `events_legacy` and
attached as the partition of everything before the day after its newest
event (its indexes match the new table's and are attached, not rebuilt;
only the range is checked, by one scan). Days after it get a partition
each; retention deletes the legacy partition's expired rows in batches
until all of it has expired, then drops it. Only the keys are copied.

Nothing changes on SQLite.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-10
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

DAY_US = 86_400_000_000
AHEAD_DAYS = 3  # as uba.storage.partitions.AHEAD_DAYS, frozen here
INDEXES = {
    "ix_events_occurred": "occurred_at_us, id",
    "ix_events_user_occurred": "user_id, occurred_at_us, id",
    "ix_events_type_occurred": "type, occurred_at_us",
    "ix_events_source_ip_occurred": "source_ip, occurred_at_us",
}


def _day_partition(lower: int) -> None:
    name = datetime.fromtimestamp(lower / 1e6, UTC).strftime("events_p%Y%m%d")
    op.execute(f"CREATE TABLE {name} (LIKE events)")
    op.execute(
        f"ALTER TABLE events ATTACH PARTITION {name} FOR VALUES FROM ({lower}) TO "
        f"({lower + DAY_US})"
    )


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    version = int(bind.execute(sa.text("SHOW server_version_num")).scalar_one())
    if version < 140000:
        raise RuntimeError(
            "uba needs PostgreSQL 14 or later: expired partitions of the events are detached "
            "with DETACH PARTITION ... CONCURRENTLY"
        )
    sequence = bind.execute(sa.text("SELECT pg_get_serial_sequence('events', 'id')")).scalar_one()
    op.execute("ALTER TABLE events RENAME TO events_legacy")
    for old, new in (("pk_events", "pkey"), ("uq_events_event_id", "event_id_key")):
        op.execute(f"ALTER TABLE events_legacy RENAME CONSTRAINT {old} TO events_legacy_{new}")
    for name in INDEXES:
        op.execute(f"ALTER INDEX {name} RENAME TO {name.replace('ix_events', 'events_legacy')}")
    op.execute(
        "CREATE TABLE events (LIKE events_legacy INCLUDING DEFAULTS) "
        "PARTITION BY RANGE (occurred_at_us)"
    )
    # The ids go on from the same sequence, which the new table now owns.
    op.execute(f"ALTER SEQUENCE {sequence} OWNED BY events.id")
    op.execute("ALTER TABLE events_legacy ALTER COLUMN id DROP DEFAULT")
    for name, columns in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON events ({columns})")

    # Keys first, the unique index after: cheaper than one insert at a time.
    op.execute(
        "CREATE TABLE event_keys (event_id VARCHAR(128) NOT NULL, "
        "occurred_at_us BIGINT NOT NULL, received_at_us BIGINT NOT NULL)"
    )
    op.execute(
        "INSERT INTO event_keys (event_id, occurred_at_us, received_at_us) "
        "SELECT event_id, occurred_at_us, received_at_us FROM events_legacy"
    )
    op.execute("ALTER TABLE event_keys ADD CONSTRAINT pk_event_keys PRIMARY KEY (event_id)")

    today = (int(datetime.now(UTC).timestamp() * 1e6) // DAY_US) * DAY_US
    newest = bind.execute(sa.text("SELECT max(occurred_at_us) FROM events_legacy")).scalar()
    if newest is None:
        op.execute("DROP TABLE events_legacy")
        start = today - DAY_US  # yesterday's: late events just after midnight
    else:
        start = max(newest // DAY_US * DAY_US, today) + DAY_US
        op.execute(
            f"ALTER TABLE events ATTACH PARTITION events_legacy FOR VALUES FROM (MINVALUE) "
            f"TO ({start})"
        )
    for lower in range(start, today + (AHEAD_DAYS + 1) * DAY_US, DAY_US):
        _day_partition(lower)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    sequence = bind.execute(sa.text("SELECT pg_get_serial_sequence('events', 'id')")).scalar_one()
    op.execute("ALTER TABLE events RENAME TO events_partitioned")
    op.execute("CREATE TABLE events (LIKE events_partitioned INCLUDING DEFAULTS)")
    op.execute(f"ALTER SEQUENCE {sequence} OWNED BY events.id")
    op.execute("INSERT INTO events SELECT * FROM events_partitioned")
    op.execute("DROP TABLE events_partitioned")
    op.execute("DROP TABLE event_keys")
    op.execute("ALTER TABLE events ADD CONSTRAINT pk_events PRIMARY KEY (id)")
    op.execute("ALTER TABLE events ADD CONSTRAINT uq_events_event_id UNIQUE (event_id)")
    for name, columns in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON events ({columns})")
