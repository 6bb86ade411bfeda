"""applied events: what the population partitions of the event log analysed

The workers of a partitioned event log run the population detectors on
copies of the events re-keyed by source address or organisation
(docs/scaling.md). A copy can be delivered again (a worker died before its
acknowledgement, a lease moved); this table lets the partition's owner
recognise it and analyse each event once, in the transaction that stores
its anomalies.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-20
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "applied_events",
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("applied_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "event_id", name="pk_applied_events"),
    )
    op.create_index("ix_applied_events_applied", "applied_events", ["applied_at_us"])


def downgrade() -> None:
    op.drop_index("ix_applied_events_applied", table_name="applied_events")
    op.drop_table("applied_events")
