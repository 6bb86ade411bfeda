"""incidents: index (status, seq) instead of (status, severity)

A ListIncidents page filtered by status reads the newest incidents of
that status in seq order; with (status, severity) SQLite took every
incident of the status and sorted them. Nothing queried by status and
severity together without seq.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_incidents_status_seq", "incidents", ["status", "seq"])
    op.drop_index("ix_incidents_status_severity", table_name="incidents")


def downgrade() -> None:
    op.create_index("ix_incidents_status_severity", "incidents", ["status", "severity"])
    op.drop_index("ix_incidents_status_seq", table_name="incidents")
