"""The audit trail is append-only in the database itself, below the API:
no UPDATE, DELETE, TRUNCATE (PostgreSQL) or REPLACE of an existing id
(SQLite) gets through, on a database created fresh or upgraded with
`uba db upgrade`, while the server's own inserts keep working."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from test_migrations import upgrade_to

from uba.domain.security import AuditEvent
from uba.storage.database import Database
from uba.storage.security import AuditWriter, SecurityRepository

COLUMNS = "id, occurred_at_us, actor, key_id, action, target, peer, outcome, detail"
FORGED = "(1, 0, 'nobody', '', 'forged', '', '', 'ok', '')"


def rows(database: Database) -> list[tuple]:
    with database.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(text("SELECT id, actor, action FROM audit_log ORDER BY id"))
        ]


def refused(database: Database, statement: str) -> str:
    with pytest.raises(DBAPIError) as info:
        with database.engine.begin() as conn:
            conn.execute(text(statement))
    return str(info.value.orig)


@pytest.fixture(params=["sqlite", "postgresql"])
def upgraded(request, tmp_path, make_database_url):
    """A database with two audit entries written at revision 0004, then
    brought to the head by `uba db upgrade`, as an operator would."""
    url = make_database_url(request.param) or f"sqlite:///{tmp_path}/uba.db"
    database = Database(url)
    try:
        upgrade_to(database, "0004")
        SecurityRepository(database).append(
            [
                AuditEvent("keys.create", "ok", actor="alice"),
                AuditEvent("ResolveAlert", "ok", actor="bob"),
            ]
        )
        done = subprocess.run(
            [sys.executable, "-m", "uba", "db", "upgrade", "--database-url", url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert database.current_revision() == Database.head_revision()
        assert rows(database) == [(1, "alice", "keys.create"), (2, "bob", "ResolveAlert")]
        yield database
    finally:
        database.dispose()


def test_no_statement_removes_or_rewrites_an_entry(upgraded):
    database = upgraded
    before = rows(database)
    statements = [
        "UPDATE audit_log SET actor = 'nobody' WHERE id = 1",
        "DELETE FROM audit_log WHERE id = 1",
        "DELETE FROM audit_log",
    ]
    if database.backend == "sqlite":
        # REPLACE deletes the conflicting row without firing delete triggers.
        statements += [
            f"REPLACE INTO audit_log ({COLUMNS}) VALUES {FORGED}",
            f"INSERT OR REPLACE INTO audit_log ({COLUMNS}) VALUES {FORGED}",
            f"INSERT INTO audit_log ({COLUMNS}) VALUES {FORGED} "
            "ON CONFLICT (id) DO UPDATE SET actor = excluded.actor",
        ]
    else:
        statements += ["TRUNCATE audit_log", "TRUNCATE audit_log RESTART IDENTITY CASCADE"]
    for statement in statements:
        assert "append-only" in refused(database, statement), statement
        assert rows(database) == before, statement


def test_the_servers_own_inserts_still_work(upgraded):
    database = upgraded
    writer = AuditWriter(SecurityRepository(database))
    for i in range(2000):
        writer.record(
            AuditEvent("ListLogs", "ok", actor=f"reader-{i}", occurred_at=datetime.now(UTC))
        )
    writer.close(timeout=60)
    stored = rows(database)
    assert len(stored) == 2002
    assert [r[0] for r in stored] == list(range(1, 2003))  # ids assigned in order, none reused
    assert stored[-1][1] == "reader-1999"


def test_an_entry_keeps_a_long_forwarded_chain_whole(upgraded):
    """The peer of an entry holds the whole forwarded chain (up to the
    domain's bound), so its right-most, trustworthy hops are never cut."""
    from uba.domain.security import MAX_PEER_TEXT, CallOrigin

    chain = ", ".join(f"198.51.100.{i}" for i in range(60)) + ", 192.0.2.7"
    peer = CallOrigin.of("ipv4:127.0.0.1:5", chain, trusted_peer=True).describe()
    assert 128 < len(peer) <= MAX_PEER_TEXT
    repository = SecurityRepository(upgraded)
    repository.append([AuditEvent("ExportLogs", "ok", actor="carol", peer=peer)])
    (newest, *_) = repository.page_audit("carol", "", 1, None)
    assert newest.peer == peer and newest.peer.endswith(", 192.0.2.7")
