"""incidents: incidents and their members; ATT&CK ids on anomalies and alerts

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("entity_kind", sa.String(16), nullable=False),
        sa.Column("entity_id", sa.String(256), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("severity", sa.Integer, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tactics", sa.Text, nullable=False),
        sa.Column("techniques", sa.Text, nullable=False),
        sa.Column("anomaly_count", sa.BigInteger, nullable=False),
        sa.Column("first_seen_at_us", sa.BigInteger, nullable=False),
        sa.Column("last_seen_at_us", sa.BigInteger, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.Column("acknowledged_at_us", sa.BigInteger, nullable=True),
        sa.Column("acknowledged_by", sa.String(256), nullable=False),
        sa.Column("resolved_at_us", sa.BigInteger, nullable=True),
        sa.Column("resolved_by", sa.String(256), nullable=False),
        sa.Column("resolution", sa.String(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_incidents"),
        sa.UniqueConstraint("incident_id", name="uq_incidents_incident_id"),
        sa.UniqueConstraint("seq", name="uq_incidents_seq"),
    )
    op.create_index(
        "ix_incidents_entity_status", "incidents", ["entity_kind", "entity_id", "status"]
    )
    op.create_index("ix_incidents_status_severity", "incidents", ["status", "severity"])
    op.create_table(
        "incident_members",
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("anomaly_id", sa.String(64), nullable=False),
        sa.Column("alert_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("occurred_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "anomaly_id", name="pk_incident_members"),
    )
    op.create_index("ix_incident_members_user", "incident_members", ["user_id", "incident_id"])
    op.create_index("ix_incident_members_alert", "incident_members", ["alert_id"])
    # Rows stored before this revision have no ATT&CK ids and no incident.
    with op.batch_alter_table("anomalies") as batch:
        batch.add_column(sa.Column("tactics", sa.Text, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("techniques", sa.Text, nullable=False, server_default="[]"))
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("tactics", sa.Text, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("techniques", sa.Text, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("incident_id", sa.String(64), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("incident_id")
        batch.drop_column("techniques")
        batch.drop_column("tactics")
    with op.batch_alter_table("anomalies") as batch:
        batch.drop_column("techniques")
        batch.drop_column("tactics")
    op.drop_index("ix_incident_members_alert", table_name="incident_members")
    op.drop_index("ix_incident_members_user", table_name="incident_members")
    op.drop_table("incident_members")
    op.drop_index("ix_incidents_status_severity", table_name="incidents")
    op.drop_index("ix_incidents_entity_status", table_name="incidents")
    op.drop_table("incidents")
