"""trained models: model versions in the database, shared by every process

A front end of the event log trains the Isolation Forest; the workers score
with it. Until now a model was a pair of files in the training process's
data dir, out of the workers' reach. A version is now a row: its metadata
(JSON) and the serialized estimator. The newest row of a name is the
current version. Models already in a data dir are copied in by the server
on its first start after this migration (uba.app), not here: the migration
does not know the data dir.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "trained_models",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("info", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_trained_models"),
        sa.UniqueConstraint("name", "version", name="uq_trained_models_name_version"),
    )
    op.create_index("ix_trained_models_name_id", "trained_models", ["name", "id"])


def downgrade() -> None:
    op.drop_index("ix_trained_models_name_id", table_name="trained_models")
    op.drop_table("trained_models")
