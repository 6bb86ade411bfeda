"""detection: baselines, shared state, anomalies, alerts, suppressions, risk

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "baselines",
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_baselines"),
    )
    op.create_table(
        "state",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_state"),
    )
    # The alert sequence counter: its row lock makes alert commits, and so
    # their seq numbers, ordered across server processes.
    op.bulk_insert(
        sa.table(
            "state",
            sa.column("name"),
            sa.column("version"),
            sa.column("data"),
            sa.column("updated_at_us"),
        ),
        [{"name": "alert_seq", "version": 0, "data": "{}", "updated_at_us": 0}],
    )
    op.create_table(
        "anomalies",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("anomaly_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("detector", sa.String(64), nullable=False),
        sa.Column("detector_version", sa.String(32), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("severity", sa.Integer, nullable=False),
        sa.Column("event_ids", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("observed", sa.Text, nullable=False),
        sa.Column("expected", sa.Text, nullable=False),
        sa.Column("baseline_observations", sa.BigInteger, nullable=False),
        sa.Column("baseline_mature", sa.Integer, nullable=False),
        sa.Column("features", sa.Text, nullable=False),
        sa.Column("occurred_at_us", sa.BigInteger, nullable=False),
        sa.Column("detected_at_us", sa.BigInteger, nullable=False),
        sa.Column("alert_id", sa.String(64), nullable=False),
        sa.Column("quarantined", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_anomalies"),
        sa.UniqueConstraint("anomaly_id", name="uq_anomalies_anomaly_id"),
    )
    op.create_index("ix_anomalies_occurred", "anomalies", ["occurred_at_us", "id"])
    op.create_index("ix_anomalies_user_occurred", "anomalies", ["user_id", "occurred_at_us", "id"])
    op.create_index("ix_anomalies_detector_occurred", "anomalies", ["detector", "occurred_at_us"])
    op.create_index("ix_anomalies_alert", "anomalies", ["alert_id"])
    op.create_table(
        "alerts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("detector", sa.String(64), nullable=False),
        sa.Column("severity", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("anomaly_ids", sa.Text, nullable=False),
        sa.Column("anomaly_count", sa.BigInteger, nullable=False),
        sa.Column("user_risk", sa.Integer, nullable=False),
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
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("alert_id", name="uq_alerts_alert_id"),
        sa.UniqueConstraint("seq", name="uq_alerts_seq"),
    )
    op.create_index("ix_alerts_user_detector_status", "alerts", ["user_id", "detector", "status"])
    op.create_index("ix_alerts_status_severity", "alerts", ["status", "severity"])
    op.create_table(
        "suppressions",
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("detector", sa.String(64), nullable=False),
        sa.Column("until_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "detector", name="pk_suppressions"),
    )
    op.create_table(
        "user_risk",
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("weight_sum", sa.Float, nullable=False),
        sa.Column("as_of_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_user_risk"),
    )


def downgrade() -> None:
    for table in ("user_risk", "suppressions", "alerts", "anomalies", "state", "baselines"):
        op.drop_table(table)
