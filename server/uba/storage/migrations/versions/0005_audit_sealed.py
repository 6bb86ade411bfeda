"""audit_log sealed below the row triggers: no TRUNCATE, no REPLACE

0003's triggers refuse UPDATE and DELETE of single rows, but PostgreSQL's
TRUNCATE fires no row trigger, and SQLite's REPLACE (INSERT OR REPLACE)
deletes the row it conflicts with without firing delete triggers (unless
recursive_triggers is on), then writes its own values under the old id.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # audit_log.id is an INTEGER PRIMARY KEY (the rowid): the lookup is
        # one primary-key probe per insert. An insert that lets the id be
        # assigned (AuditWriter's) never matches: NEW.id is NULL or -1 here.
        op.execute(
            "CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log "
            "WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id) "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )
    else:
        # A statement-level trigger: TRUNCATE fires no row triggers.
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_replace")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
