"""erasure and retention: the pseudonym secret, and audit rewrites by grant

The right to erasure must reach the audit trail too, which migrations 0003
and 0005 made append-only. Rather than lift that, the row triggers now let
exactly two kinds of change through, and only inside a transaction that
holds a grant row in `audit_grants`:
- kind 'pseudonym': an UPDATE that changes nothing but `target` and
  `detail`, and writes the grant's pseudonym into one of them (the erasure
  replaces a person's id by its pseudonym);
- kind 'expire': a DELETE of an entry older than the grant's cutoff (the
  audit retention).
The erasure and the retention job insert the grant, change the rows, append
their own audit entry and delete the grant in one transaction, so no
committed grant ever exists and every rewrite is itself in the trail. Any
other UPDATE, DELETE, TRUNCATE or REPLACE is refused as before.

`pseudonym_secret` holds the per-database key of the pseudonyms (HMAC of
a user id): the same user always maps to the same pseudonym, and a
pseudonym cannot be turned back into the id without the key.

Two indexes serve the retention job: anomalies expire with their incident
memberships, and a resolved incident is kept while an alert of it is open.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_UNCHANGED = ("id", "occurred_at_us", "actor", "key_id", "action", "peer", "outcome")


def upgrade() -> None:
    op.create_table(
        "pseudonym_secret",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pseudonym_secret"),
    )
    op.execute(
        sa.text("INSERT INTO pseudonym_secret (id, secret) VALUES (1, :secret)").bindparams(
            secret=secrets.token_hex(32)
        )
    )
    op.create_table(
        "audit_grants",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("kind", name="pk_audit_grants"),
    )
    op.create_index("ix_incident_members_anomaly", "incident_members", ["anomaly_id"])
    op.create_index("ix_alerts_incident", "alerts", ["incident_id"])
    if op.get_bind().dialect.name == "sqlite":
        changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in _UNCHANGED)
        op.execute("DROP TRIGGER audit_log_no_update")
        op.execute(
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
            f"WHEN {changed} OR NOT EXISTS (SELECT 1 FROM audit_grants g "
            "WHERE g.kind = 'pseudonym' "
            "AND (instr(NEW.target, g.value) > 0 OR instr(NEW.detail, g.value) > 0)) "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )
        op.execute("DROP TRIGGER audit_log_no_delete")
        op.execute(
            "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
            "WHEN NOT EXISTS (SELECT 1 FROM audit_grants g WHERE g.kind = 'expire' "
            "AND OLD.occurred_at_us < CAST(g.value AS INTEGER)) "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )
    else:
        changed = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in _UNCHANGED)
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute(
            "CREATE FUNCTION audit_log_by_grant() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF TG_OP = 'UPDATE' AND NOT (" + changed + ") AND EXISTS (SELECT 1 FROM "
            "audit_grants g WHERE g.kind = 'pseudonym' AND (strpos(NEW.target, g.value) > 0 "
            "OR strpos(NEW.detail, g.value) > 0)) THEN RETURN NEW; END IF; "
            "IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM audit_grants g WHERE "
            "g.kind = 'expire' AND OLD.occurred_at_us < g.value::bigint) THEN RETURN OLD; "
            "END IF; RAISE EXCEPTION 'audit_log is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_by_grant()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"DROP TRIGGER audit_log_no_{verb.lower()}")
            op.execute(
                f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )
    else:
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION audit_log_by_grant()")
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
    op.drop_index("ix_alerts_incident", table_name="alerts")
    op.drop_index("ix_incident_members_anomaly", table_name="incident_members")
    op.drop_table("audit_grants")
    op.drop_table("pseudonym_secret")
