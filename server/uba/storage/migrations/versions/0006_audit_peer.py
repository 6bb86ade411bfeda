"""audit_log.peer holds the whole forwarded chain: 1024 characters

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite does not enforce VARCHAR lengths; the repository bounds the text.
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "audit_log",
            "peer",
            type_=sa.String(1024),
            existing_type=sa.String(128),
            existing_nullable=False,
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute(
            "ALTER TABLE audit_log ALTER COLUMN peer TYPE VARCHAR(128) USING left(peer, 128)"
        )
