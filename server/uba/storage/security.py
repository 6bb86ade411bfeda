"""API keys and the audit trail in the database.

Keys are found by the digest of their token (unique index); the token itself
is never stored. The audit trail is append-only: this module only inserts
and reads it (migrations 0003 and 0005 add triggers that refuse UPDATE,
DELETE, TRUNCATE and REPLACE).
Audit entries of the server are written by AuditWriter, a background thread
that batches them, so that no RPC waits for an audit insert.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from uba.domain import security as sec
from uba.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from uba.storage.database import Database
from uba.storage.events import from_us, to_us
from uba.storage.models import ApiKeyRow, AuditRow, table_of

log = logging.getLogger(__name__)
api_keys_t = table_of(ApiKeyRow)
audit_t = table_of(AuditRow)
MAX_NAME_LENGTH = 128


def _key(row) -> sec.ApiKey:
    return sec.ApiKey(
        key_id=row.key_id,
        name=row.name,
        scopes=frozenset(row.scopes.split()),
        created_at=from_us(row.created_at_us),
        expires_at=None if row.expires_at_us is None else from_us(row.expires_at_us),
        revoked_at=None if row.revoked_at_us is None else from_us(row.revoked_at_us),
    )


def _audit_values(e: sec.AuditEvent) -> dict:
    # Column widths bound what a caller can make us store.
    return dict(
        occurred_at_us=to_us(e.occurred_at),
        actor=e.actor[:128],
        key_id=e.key_id[:32],
        action=e.action[:64],
        target=e.target[:512],
        peer=e.peer[:1024],
        outcome=e.outcome[:32],
        detail=e.detail[:512],
    )


class SecurityRepository:
    def __init__(self, database: Database):
        self.database = database

    # -- keys ------------------------------------------------------------------------

    def create_key(
        self,
        name: str,
        scopes: frozenset[str],
        now: datetime,
        expires_at: datetime | None = None,
        actor: str = "",
        peer: str = "",
    ) -> tuple[sec.ApiKey, str]:
        """Stores a new key; returns it and its token (shown once)."""
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
            raise InvalidArgument.single(
                "name", f"required, printable, at most {MAX_NAME_LENGTH} characters"
            )
        if expires_at is not None and expires_at <= now:
            raise InvalidArgument.single("expires_in", "must be in the future")
        token = sec.new_token()
        key = sec.ApiKey(sec.new_key_id(), name, scopes, now, expires_at)
        try:
            with self.database.write() as conn:
                conn.execute(
                    insert(api_keys_t).values(
                        key_id=key.key_id,
                        name=name,
                        digest=sec.digest(token),
                        scopes=" ".join(sorted(scopes)),
                        created_at_us=to_us(now),
                        expires_at_us=None if expires_at is None else to_us(expires_at),
                    )
                )
                conn.execute(
                    insert(audit_t).values(
                        **_audit_values(
                            sec.AuditEvent(
                                "keys.create",
                                "ok",
                                actor=actor,
                                target=name,
                                peer=peer,
                                occurred_at=now,
                                detail=f"{key.key_id} scopes={','.join(sorted(scopes))}"
                                + (f" expires={expires_at.isoformat()}" if expires_at else ""),
                            )
                        )
                    )
                )
        except IntegrityError:
            raise FailedPrecondition(f"a key named {name!r} exists already") from None
        return key, token

    def revoke(self, name_or_id: str, now: datetime, actor: str = "", peer: str = "") -> sec.ApiKey:
        with self.database.write() as conn:
            row = conn.execute(
                select(api_keys_t).where(
                    or_(api_keys_t.c.name == name_or_id, api_keys_t.c.key_id == name_or_id)
                )
            ).first()
            if row is None:
                raise NotFound(f"no API key named {name_or_id!r}")
            if row.revoked_at_us is None:
                conn.execute(
                    update(api_keys_t)
                    .where(api_keys_t.c.id == row.id)
                    .values(revoked_at_us=to_us(now))
                )
            conn.execute(
                insert(audit_t).values(
                    **_audit_values(
                        sec.AuditEvent(
                            "keys.revoke",
                            "ok",
                            actor=actor,
                            target=row.name,
                            peer=peer,
                            occurred_at=now,
                            detail=row.key_id,
                        )
                    )
                )
            )
            row = conn.execute(select(api_keys_t).where(api_keys_t.c.id == row.id)).one()
        return _key(row)

    def find(self, digest: str) -> tuple[sec.ApiKey, str] | None:
        with self.database.read() as conn:
            row = conn.execute(select(api_keys_t).where(api_keys_t.c.digest == digest)).first()
        return None if row is None else (_key(row), row.digest)

    def keys(self) -> list[sec.ApiKey]:
        with self.database.read() as conn:
            return [
                _key(r) for r in conn.execute(select(api_keys_t).order_by(api_keys_t.c.id)).all()
            ]

    def active_digests(self, now: datetime) -> set[str]:
        """Digests of the keys neither revoked nor expired at `now`."""
        now_us = to_us(now)
        with self.database.read() as conn:
            rows = conn.execute(
                select(api_keys_t.c.digest).where(
                    api_keys_t.c.revoked_at_us.is_(None),
                    or_(api_keys_t.c.expires_at_us.is_(None), api_keys_t.c.expires_at_us > now_us),
                )
            ).all()
        return {r.digest for r in rows}

    def has_keys(self) -> bool:
        with self.database.read() as conn:
            return conn.execute(select(api_keys_t.c.id).limit(1)).first() is not None

    # -- audit -------------------------------------------------------------------------

    def append(self, events: Sequence[sec.AuditEvent]) -> None:
        if events:
            with self.database.write() as conn:
                conn.execute(insert(audit_t), [_audit_values(e) for e in events])

    def page_audit(
        self, actor: str, action: str, limit: int, before_seq: int | None
    ) -> list[sec.AuditEvent]:
        query = select(audit_t)
        if actor:
            query = query.where(audit_t.c.actor == actor)
        if action:
            query = query.where(audit_t.c.action == action)
        if before_seq is not None:
            query = query.where(audit_t.c.id < before_seq)
        with self.database.read() as conn:
            rows = conn.execute(query.order_by(audit_t.c.id.desc()).limit(limit)).all()
        return [
            sec.AuditEvent(
                action=r.action,
                outcome=r.outcome,
                actor=r.actor,
                key_id=r.key_id,
                target=r.target,
                peer=r.peer,
                detail=r.detail,
                occurred_at=from_us(r.occurred_at_us),
                seq=r.id,
            )
            for r in rows
        ]


class AuditWriter:
    """Writes audit entries on its own thread, in batches: callers only put
    an entry in a queue. A full queue (a flood of failed logins) drops
    entries with one warning rather than slowing the server down."""

    def __init__(self, repository: SecurityRepository, max_queue: int = 10_000):
        self._repository = repository
        self._queue: queue.Queue[sec.AuditEvent | None] = queue.Queue(max_queue)
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name="uba-audit", daemon=True)
        self._thread.start()

    def record(self, event: sec.AuditEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.warning("audit queue full: %d entries dropped", self._dropped)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            while len(batch) < 500:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            events = [e for e in batch if e is not None]
            try:
                self._repository.append(events)
            except Exception:  # noqa: BLE001 - the database may be down; keep serving
                log.warning("could not write %d audit entries", len(events), exc_info=True)
            if stop:
                return

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
