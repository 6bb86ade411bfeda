"""rollups: events per hour and type, users per hour, for the dashboard

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

HOUR_US = 3_600_000_000


def upgrade() -> None:
    op.create_table(
        "event_rollup",
        sa.Column("hour", sa.BigInteger, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("hour", "type", name="pk_event_rollup"),
    )
    op.create_table(
        "user_hours",
        sa.Column("hour", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("hour", "user_id", name="pk_user_hours"),
    )
    # Events stored before this revision.
    op.execute(
        f"INSERT INTO event_rollup (hour, type, count) "
        f"SELECT occurred_at_us / {HOUR_US}, type, COUNT(*) FROM events "
        f"GROUP BY occurred_at_us / {HOUR_US}, type"
    )
    op.execute(
        f"INSERT INTO user_hours (hour, user_id) "
        f"SELECT DISTINCT occurred_at_us / {HOUR_US}, user_id FROM events"
    )


def downgrade() -> None:
    op.drop_table("user_hours")
    op.drop_table("event_rollup")
