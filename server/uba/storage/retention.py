"""Retention and erasure in the database: batched deletes of expired rows,
and a person's rows deleted or pseudonymised (uba.domain.retention and
uba.domain.erasure decide what; this module knows the tables).

Every method runs inside the ingest writer's transaction. The audit trail
is changed only under a grant row of migration 0010, inserted and deleted
again within the same transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from sqlalchemy import Connection, bindparam, text

from uba.domain.erasure import ErasureReport, Replacer, replace_in_json
from uba.domain.security import AuditEvent
from uba.storage.events import HOUR_US, to_us
from uba.storage.security import _audit_values, audit_t

RESOLVED = "resolved"


def _chunks(items: Sequence, size: int = 500) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _like(value: str) -> str:
    """A LIKE pattern for `value` anywhere in a text (with ESCAPE '!')."""
    return "%" + value.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"


class RetentionRepository:
    def __init__(self, conn: Connection, backend: str):
        self._conn = conn
        self.backend = backend

    def _ids(self, sql: str, **params) -> list:
        return [r[0] for r in self._conn.execute(text(sql), params)]

    def _delete_in(self, table: str, column: str, values: Sequence) -> int:
        deleted = 0
        for chunk in _chunks(list(values)):
            deleted += self._conn.execute(
                text(f"DELETE FROM {table} WHERE {column} IN :values").bindparams(
                    bindparam("values", expanding=True)
                ),
                {"values": list(chunk)},
            ).rowcount
        return deleted

    # -- retention ------------------------------------------------------------------

    def expire(self, kind: str, cutoff: datetime, limit: int) -> int:
        return getattr(self, f"_expire_{kind}")(to_us(cutoff), limit)

    def _expire_events(self, cutoff_us: int, limit: int) -> int:
        """Expired events still stored, with their keys on PostgreSQL, then
        the rollups of expired hours; at most `limit` rows in all. On
        PostgreSQL the partitions of expired days are dropped whole before
        this runs (uba.storage.partitions), so the events here are only the
        expired rows of a partition that also holds younger ones: the legacy
        partition of migration 0012."""
        rows = self._conn.execute(
            text(
                "SELECT occurred_at_us, id, event_id FROM events WHERE occurred_at_us < :c "
                "ORDER BY occurred_at_us LIMIT :n"
            ),
            {"c": cutoff_us, "n": limit},
        ).all()
        if self.backend == "postgresql":
            self._delete_in("event_keys", "event_id", [r[2] for r in rows])
        deleted = self._delete_events([(r[0], r[1]) for r in rows])
        # Once the expired hours hold no event, their rollup rows go (the
        # cutoff is a whole day, so no hour is cut in two).
        hour = cutoff_us // HOUR_US
        for table in ("user_hours", "event_rollup"):
            if deleted >= limit:
                break
            key = "user_id" if table == "user_hours" else "type"
            rows = self._conn.execute(
                text(f"SELECT hour, {key} FROM {table} WHERE hour < :h LIMIT :n"),
                {"h": hour, "n": limit - deleted},
            ).all()
            for h, k in rows:
                deleted += self._conn.execute(
                    text(f"DELETE FROM {table} WHERE hour = :h AND {key} = :k"), {"h": h, "k": k}
                ).rowcount
        return deleted

    def _delete_events(self, rows: Sequence) -> int:
        """Deletes events by (occurred_at_us, id): the time range lets
        PostgreSQL search only the partitions that hold them."""
        deleted = 0
        for chunk in _chunks(sorted(rows)):
            deleted += self._conn.execute(
                text(
                    "DELETE FROM events WHERE occurred_at_us >= :lo AND occurred_at_us <= :hi "
                    "AND id IN :ids"
                ).bindparams(bindparam("ids", expanding=True)),
                {"lo": chunk[0][0], "hi": chunk[-1][0], "ids": [r[1] for r in chunk]},
            ).rowcount
        return deleted

    def _expire_anomalies(self, cutoff_us: int, limit: int) -> int:
        # Never the evidence of an alert or incident that is still open.
        rows = self._conn.execute(
            text(
                "SELECT a.id, a.anomaly_id FROM anomalies a "
                "LEFT JOIN alerts l ON l.alert_id = a.alert_id "
                "LEFT JOIN incidents i ON i.incident_id = l.incident_id "
                "WHERE a.occurred_at_us < :c AND (l.status IS NULL OR l.status = :r) "
                "AND (i.status IS NULL OR i.status = :r) ORDER BY a.occurred_at_us LIMIT :n"
            ),
            {"c": cutoff_us, "r": RESOLVED, "n": limit},
        ).all()
        self._delete_in("incident_members", "anomaly_id", [r[1] for r in rows])
        return self._delete_in("anomalies", "id", [r[0] for r in rows])

    def _expire_alerts(self, cutoff_us: int, limit: int) -> int:
        """Resolved alerts (with their anomalies) and resolved incidents
        (with their memberships), by their last change; never one that is
        open, nor a resolved alert of an incident still open."""
        alerts = self._ids(
            "SELECT l.alert_id FROM alerts l LEFT JOIN incidents i "
            "ON i.incident_id = l.incident_id WHERE l.status = :r AND l.updated_at_us < :c "
            "AND (i.status IS NULL OR i.status = :r) ORDER BY l.updated_at_us LIMIT :n",
            r=RESOLVED,
            c=cutoff_us,
            n=limit,
        )
        anomalies = self._ids_in("SELECT anomaly_id FROM anomalies WHERE alert_id IN :v", alerts)
        self._delete_in("incident_members", "anomaly_id", anomalies)
        self._delete_in("anomalies", "alert_id", alerts)
        deleted = self._delete_in("alerts", "alert_id", alerts)
        if deleted < limit:
            incidents = self._ids(
                "SELECT i.incident_id FROM incidents i WHERE i.status = :r "
                "AND i.updated_at_us < :c AND NOT EXISTS (SELECT 1 FROM alerts l "
                "WHERE l.incident_id = i.incident_id AND l.status <> :r) "
                "ORDER BY i.updated_at_us LIMIT :n",
                r=RESOLVED,
                c=cutoff_us,
                n=limit - deleted,
            )
            self._delete_in("incident_members", "incident_id", incidents)
            deleted += self._delete_in("incidents", "incident_id", incidents)
        return deleted

    def _expire_notifications(self, cutoff_us: int, limit: int) -> int:
        return self._delete_in(
            "notifications",
            "id",
            self._ids(
                "SELECT id FROM notifications WHERE status = 'delivered' "
                "AND delivered_at_us < :c ORDER BY id LIMIT :n",
                c=cutoff_us,
                n=limit,
            ),
        )

    def _expire_audit(self, cutoff_us: int, limit: int) -> int:
        ids = self._ids(
            "SELECT id FROM audit_log WHERE occurred_at_us < :c ORDER BY id LIMIT :n",
            c=cutoff_us,
            n=limit,
        )
        if not ids:
            return 0
        with self._grant("expire", str(cutoff_us)):
            return self._delete_in("audit_log", "id", ids)

    def _ids_in(self, sql: str, values: Sequence) -> list:
        found: list = []
        for chunk in _chunks(list(values)):
            found.extend(
                r[0]
                for r in self._conn.execute(
                    text(sql).bindparams(bindparam("v", expanding=True)), {"v": list(chunk)}
                )
            )
        return found

    def _grant(self, kind: str, value: str):
        conn = self._conn

        class _Grant:
            def __enter__(self) -> None:
                conn.execute(
                    text("INSERT INTO audit_grants (kind, value) VALUES (:k, :v)"),
                    {"k": kind, "v": value},
                )

            def __exit__(self, *exc) -> None:
                if exc[0] is None:
                    conn.execute(text("DELETE FROM audit_grants WHERE kind = :k"), {"k": kind})
                # On an error the whole transaction rolls back, grant and all.

        return _Grant()

    # -- erasure --------------------------------------------------------------------

    def pseudonym_secret(self) -> str:
        return self._conn.execute(
            text("SELECT secret FROM pseudonym_secret WHERE id = 1")
        ).scalar_one()

    def delete_user_events(self, user_id: str, limit: int | None) -> int:
        """Deletes the user's events (the oldest `limit` of them, or all),
        taking them out of the hourly counts as well, and on PostgreSQL
        their keys."""
        sql = "SELECT occurred_at_us, id, type, event_id FROM events WHERE user_id = :u"
        params: dict[str, object] = {"u": user_id}
        if limit is not None:
            sql += " ORDER BY occurred_at_us LIMIT :n"
            params["n"] = limit
        rows = self._conn.execute(text(sql), params).all()
        if not rows:
            return 0
        counts = Counter((occurred // HOUR_US, type_) for occurred, _, type_, _ in rows)
        for (hour, type_), n in sorted(counts.items()):
            self._conn.execute(
                text("UPDATE event_rollup SET count = count - :n WHERE hour = :h AND type = :t"),
                {"n": n, "h": hour, "t": type_},
            )
        self._conn.execute(text("DELETE FROM event_rollup WHERE count <= 0"))
        if self.backend == "postgresql":
            self._delete_in("event_keys", "event_id", [r[3] for r in rows])
        return self._delete_events([(r[0], r[1]) for r in rows])

    def erase_user(
        self, user_id: str, pseudonym: str, replace: Replacer, everywhere: bool = True
    ) -> tuple[int, int]:
        """Deletes the rows about the user only and pseudonymises the others;
        returns (rows deleted, rows rewritten). Not `everywhere` (an event
        log's population partition): the audit trail is left to the user's
        partition, and the notifications (a scan of the table) are rewritten
        only when findings naming the user were."""
        conn, params = self._conn, {"u": user_id, "p": pseudonym}
        removed = sum(
            conn.execute(text(f"DELETE FROM {table} WHERE user_id = :u"), params).rowcount
            for table in ("baselines", "user_risk", "suppressions", "user_hours")
        )
        rewritten = 0
        for r in conn.execute(
            text(
                "SELECT id, reason, observed, expected, features FROM anomalies WHERE user_id = :u"
            ),
            params,
        ).all():
            conn.execute(
                text(
                    "UPDATE anomalies SET user_id = :p, reason = :reason, observed = :observed, "
                    "expected = :expected, features = :features WHERE id = :id"
                ),
                {
                    "p": pseudonym,
                    "id": r.id,
                    "reason": replace(r.reason),
                    "observed": replace(r.observed),
                    "expected": replace(r.expected),
                    "features": replace(r.features),
                },
            )
            rewritten += 1
        for r in conn.execute(
            text("SELECT id, title, reason, note FROM alerts WHERE user_id = :u"), params
        ).all():
            conn.execute(
                text(
                    "UPDATE alerts SET user_id = :p, title = :title, reason = :reason, "
                    "note = :note WHERE id = :id"
                ),
                {
                    "p": pseudonym,
                    "id": r.id,
                    "title": replace(r.title),
                    "reason": replace(r.reason),
                    "note": replace(r.note),
                },
            )
            rewritten += 1
        incidents = set(
            self._ids(
                "SELECT incident_id FROM incidents WHERE entity_kind = 'user' AND entity_id = :u",
                u=user_id,
            )
        ) | set(self._ids("SELECT incident_id FROM incident_members WHERE user_id = :u", u=user_id))
        for incident_id in sorted(incidents):
            found = conn.execute(
                text(
                    "SELECT id, entity_kind, entity_id, title, note, data FROM incidents "
                    "WHERE incident_id = :i"
                ),
                {"i": incident_id},
            ).one_or_none()
            if found is None:
                continue
            r = found
            conn.execute(
                text(
                    "UPDATE incidents SET entity_id = :e, title = :title, note = :note, "
                    "data = :data WHERE id = :id"
                ),
                {
                    "id": r.id,
                    "e": pseudonym
                    if r.entity_kind == "user" and r.entity_id == user_id
                    else r.entity_id,
                    "title": replace(r.title),
                    "note": replace(r.note),
                    "data": _rewrite_json(r.data, replace),
                },
            )
            rewritten += 1
        rewritten += conn.execute(
            text("UPDATE incident_members SET user_id = :p WHERE user_id = :u"), params
        ).rowcount
        if everywhere or rewritten:
            rewritten += self._rewrite_notifications(user_id, replace)
        if everywhere:
            rewritten += self._rewrite_audit(pseudonym, replace)
        return removed, rewritten

    def _mentions(self, table: str, columns: Sequence[str], spellings: set[str]) -> list:
        where = " OR ".join(
            f"{c} LIKE :l{i} ESCAPE '!'" for c in columns for i in range(len(spellings))
        )
        params = {f"l{i}": _like(s) for i, s in enumerate(sorted(spellings))}
        return list(
            self._conn.execute(
                text(f"SELECT id, {', '.join(columns)} FROM {table} WHERE {where}"), params
            ).all()
        )

    def _rewrite_notifications(self, user_id: str, replace: Replacer) -> int:
        rewritten = 0
        # The payload's JSON may spell the id with \u escapes.
        spellings = {user_id, json.dumps(user_id)[1:-1]}
        for r in self._mentions("notifications", ("payload",), spellings):
            payload = _rewrite_json(r.payload, replace)
            if payload != r.payload:
                self._conn.execute(
                    text("UPDATE notifications SET payload = :p WHERE id = :id"),
                    {"p": payload, "id": r.id},
                )
                rewritten += 1
        return rewritten

    def _rewrite_audit(self, pseudonym: str, replace: Replacer) -> int:
        changes = []
        for r in self._mentions("audit_log", ("target", "detail"), set(replace.spellings)):
            target, detail = replace(r.target)[:512], replace(r.detail)[:512]
            if (target, detail) != (r.target, r.detail):
                changes.append({"id": r.id, "t": target, "d": detail})
        if changes:
            with self._grant("pseudonym", pseudonym):
                for change in changes:
                    self._conn.execute(
                        text("UPDATE audit_log SET target = :t, detail = :d WHERE id = :id"),
                        change,
                    )
        return len(changes)

    def append_audit_rewrite(self, event: AuditEvent, pseudonym: str) -> None:
        """The erasure's own entry, in its transaction."""
        del pseudonym  # the entry names only the pseudonym, which it carries as target
        self._conn.execute(audit_t.insert().values(**_audit_values(event)))

    # -- the event log's partitions (uba.domain.erasure.Tombstones) -----------------

    def lock_scopes(self, scopes: Sequence[str]) -> None:
        """Locks the partitions until the transaction ends (PostgreSQL:
        advisory locks, in one order; SQLite has a single writer)."""
        if self.backend != "postgresql" or not scopes:
            return
        keys = sorted({_scope_lock_key(s) for s in scopes})
        self._conn.execute(
            text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
            {"keys": keys},
        )

    def erasure_report(self, erasure_id: str, scope: str) -> ErasureReport | None:
        row = self._conn.execute(
            text(
                "SELECT pseudonym, events_deleted, records_deleted, records_pseudonymised "
                "FROM erasures WHERE erasure_id = :e AND scope = :s"
            ),
            {"e": erasure_id, "s": scope},
        ).one_or_none()
        return None if row is None else ErasureReport(*row)

    def erasure_reports(self, erasure_id: str) -> list[ErasureReport]:
        """What each partition applied of the erasure (read by front ends)."""
        rows = self._conn.execute(
            text(
                "SELECT pseudonym, events_deleted, records_deleted, records_pseudonymised "
                "FROM erasures WHERE erasure_id = :e ORDER BY scope"
            ),
            {"e": erasure_id},
        ).all()
        return [ErasureReport(*row) for row in rows]

    def record_erasure(
        self, erasure_id: str, scope: str, position: int, report: ErasureReport, now: datetime
    ) -> None:
        self._conn.execute(
            text(
                "INSERT INTO erasures (erasure_id, scope, pseudonym, position, events_deleted, "
                "records_deleted, records_pseudonymised, applied_at_us) VALUES (:e, :s, :p, "
                ":pos, :ev, :rd, :rp, :at)"
            ),
            {
                "e": erasure_id,
                "s": scope,
                "p": report.pseudonym,
                "pos": position,
                "ev": report.events_deleted,
                "rd": report.records_deleted,
                "rp": report.records_pseudonymised,
                "at": to_us(now),
            },
        )

    def tombstones(self, scopes: Sequence[str], after: int) -> dict[tuple[str, str], int]:
        """(partition, pseudonym) -> the latest position of an erasure there
        after `after`."""
        found: dict[tuple[str, str], int] = {}
        for chunk in _chunks(sorted(set(scopes))):
            rows = self._conn.execute(
                text(
                    "SELECT scope, pseudonym, max(position) FROM erasures "
                    "WHERE scope IN :s AND position > :after GROUP BY scope, pseudonym"
                ).bindparams(bindparam("s", expanding=True)),
                {"s": list(chunk), "after": after},
            ).all()
            found.update({(scope, alias): position for scope, alias, position in rows})
        return found

    def prune_erasures(self, before: datetime) -> int:
        return self._conn.execute(
            text("DELETE FROM erasures WHERE applied_at_us < :t"), {"t": to_us(before)}
        ).rowcount


def _scope_lock_key(scope: str) -> int:
    """A partition's advisory lock key: 64 bits of a hash, apart from the
    users' keys (uba.storage.detection)."""
    digest = hashlib.blake2b(b"uba-partition\x00" + scope.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _rewrite_json(text_value: str, replace: Callable[[str], str]) -> str:
    try:
        value = json.loads(text_value)
    except (TypeError, ValueError):
        return replace(text_value)
    return json.dumps(replace_in_json(value, replace), separators=(",", ":"), sort_keys=True)
