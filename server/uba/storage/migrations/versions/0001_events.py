"""events: the append-only activity log

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("occurred_at_us", sa.BigInteger, nullable=False),
        sa.Column("received_at_us", sa.BigInteger, nullable=False),
        sa.Column("source_ip", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(1024), nullable=False),
        sa.Column("device_id", sa.String(256), nullable=False),
        sa.Column("session_id", sa.String(256), nullable=False),
        sa.Column("country_code", sa.String(2), nullable=False),
        sa.Column("city", sa.String(128), nullable=False),
        sa.Column("latitude", sa.Float, nullable=True),
        sa.Column("longitude", sa.Float, nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("peer_group", sa.String(128), nullable=False),
        sa.Column("api_method", sa.String(16), nullable=False),
        sa.Column("api_path", sa.String(2048), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("bytes_transferred", sa.BigInteger, nullable=False),
        sa.Column("session_duration_us", sa.BigInteger, nullable=True),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("attributes", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
    )
    op.create_index("ix_events_occurred", "events", ["occurred_at_us", "id"])
    op.create_index("ix_events_user_occurred", "events", ["user_id", "occurred_at_us", "id"])
    op.create_index("ix_events_type_occurred", "events", ["type", "occurred_at_us"])
    op.create_index("ix_events_source_ip_occurred", "events", ["source_ip", "occurred_at_us"])


def downgrade() -> None:
    op.drop_table("events")
