"""Trained model versions in the database (migration 0013): the storage
behind uba.detectors.model_files.SharedModelStore, and the lock that lets
one process at a time train."""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, text
from sqlalchemy.exc import IntegrityError

from uba.storage.database import Database
from uba.storage.events import to_us
from uba.storage.models import TrainedModelRow, table_of

log = logging.getLogger(__name__)

_T = table_of(TrainedModelRow)


def _lock_key(name: str) -> int:
    """A stable advisory-lock key per model name (a signed 32-bit number,
    which pg_try_advisory_lock takes as a bigint)."""
    return zlib.crc32(f"uba.train.{name}".encode()) - 2**31


class ModelRepository:
    """Model versions as rows: the newest (highest id) of a name is current."""

    def __init__(self, database: Database):
        self._db = database

    def newest_version(self, name: str) -> str | None:
        with self._db.read() as conn:
            return conn.execute(
                select(_T.c.version).where(_T.c.name == name).order_by(_T.c.id.desc()).limit(1)
            ).scalar()

    def read(self, name: str, version: str) -> tuple[dict[str, Any], bytes]:
        with self._db.read() as conn:
            row = conn.execute(
                select(_T.c.info, _T.c.payload).where(_T.c.name == name, _T.c.version == version)
            ).first()
        if row is None:
            raise KeyError(f"no {name} model version {version} in the database")
        return json.loads(row.info), bytes(row.payload)

    def add(self, name: str, version: str, info: dict[str, Any], payload: bytes) -> bool:
        try:
            with self._db.write() as conn:
                conn.execute(
                    insert(_T).values(
                        name=name,
                        version=version,
                        created_at_us=to_us(datetime.now(UTC)),
                        info=json.dumps(info, sort_keys=True),
                        payload=payload,
                    )
                )
        except IntegrityError:
            return False
        return True

    def versions(self, name: str) -> list[tuple[str, int]]:
        """(version, payload size in bytes) of the stored versions, newest first."""
        with self._db.read() as conn:
            # length() is bytes for a BLOB (SQLite) and a bytea (PostgreSQL).
            rows = conn.execute(
                select(_T.c.version, text("length(payload)"))
                .where(_T.c.name == name)
                .order_by(_T.c.id.desc())
            ).all()
        return [(r[0], int(r[1])) for r in rows]

    def prune(self, name: str, keep: int) -> int:
        with self._db.write() as conn:
            kept = (
                select(_T.c.id)
                .where(_T.c.name == name)
                .order_by(_T.c.id.desc())
                .limit(max(keep, 1))
                .scalar_subquery()
            )
            ids = [
                r[0]
                for r in conn.execute(
                    select(_T.c.id).where(_T.c.name == name, _T.c.id.not_in(kept))
                )
            ]
            if ids:
                conn.execute(delete(_T).where(_T.c.id.in_(ids)))
        return len(ids)

    @contextmanager
    def training_lock(self, name: str) -> Iterator[bool]:
        """Yields whether this process may train `name` now: on PostgreSQL,
        whether it got a session advisory lock that no other process holds
        (released on exit, or by the server if this process dies). On
        SQLite, always True: the processes of one SQLite file rely on the
        newest-model check alone, and at worst train twice."""
        if self._db.backend != "postgresql":
            yield True
            return
        key = _lock_key(name)
        # Autocommit: the lock is held for minutes without an open transaction.
        with self._db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            try:
                yield got
            finally:
                if got:
                    try:
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    except Exception:  # noqa: BLE001 - a lost connection released it already
                        log.warning("could not release the training lock", exc_info=True)
