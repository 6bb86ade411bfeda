"""erasures: what the event log's workers applied of each erasure

With the event log (docs/scaling.md, "Erasure") an erasure travels through
the log to every partition that holds something of the user, and the
worker owning each applies it there. One row per erasure and partition
records that it was applied (a second delivery is recognised), what it
erased (the front end sums the rows into ForgetUser's answer), and where in
the partition it stood: events of the user (found by pseudonym; no user id
is kept) delivered again from before that position are dropped.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("erasure_id", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("events_deleted", sa.BigInteger(), nullable=False),
        sa.Column("records_deleted", sa.BigInteger(), nullable=False),
        sa.Column("records_pseudonymised", sa.BigInteger(), nullable=False),
        sa.Column("applied_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("erasure_id", "scope", name="pk_erasures"),
    )
    op.create_index("ix_erasures_scope", "erasures", ["scope", "position"])
    op.create_index("ix_erasures_applied_at_us", "erasures", ["applied_at_us"])


def downgrade() -> None:
    op.drop_index("ix_erasures_applied_at_us", table_name="erasures")
    op.drop_index("ix_erasures_scope", table_name="erasures")
    op.drop_table("erasures")
