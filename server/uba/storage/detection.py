"""Baselines, shared state, anomalies, alerts, suppressions and risk: rows
in and domain objects out, inside a caller's transaction."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Connection, and_, delete, func, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from uba.domain.alerts import Alert, AlertStatus, Resolution
from uba.domain.anomalies import Anomaly, Feature, Severity
from uba.storage.events import (
    driver_cursor,
    from_us,
    from_us_or_none,
    pg_int_array,
    pg_text_array,
    to_us,
    to_us_or_none,
)
from uba.storage.models import (
    AlertRow,
    AnomalyRow,
    AppliedEventRow,
    BaselineRow,
    StateRow,
    SuppressionRow,
    UserRiskRow,
    table_of,
)

baselines_t = table_of(BaselineRow)
state_t = table_of(StateRow)
anomalies_t = table_of(AnomalyRow)
alerts_t = table_of(AlertRow)
suppressions_t = table_of(SuppressionRow)
user_risk_t = table_of(UserRiskRow)
applied_t = table_of(AppliedEventRow)

ALERT_SEQ = "alert_seq"
_UPSERT_BASELINES = (
    "INSERT INTO baselines (user_id, version, data, updated_at_us) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (user_id) DO UPDATE SET version = excluded.version, data = excluded.data, "
    "updated_at_us = excluded.updated_at_us"
)


# PostgreSQL, one round trip: transaction-scoped advisory locks, one per
# user, taken in array order; then the versions, rows locked too.
_PG_LOCK_AND_VERSIONS = (
    "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k; "
    "SELECT user_id, version FROM baselines WHERE user_id = ANY(%s::text[]) FOR UPDATE"
)
# PostgreSQL: the rows as array literals, one statement whatever their number.
_PG_UPSERT_BASELINES = _UPSERT_BASELINES.replace(
    "VALUES (?, ?, ?, ?)",
    "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::bigint[])",
)


def _user_lock_key(user_id: str) -> int:
    """The user's advisory lock key: 64 bits of a hash of the id."""
    return int.from_bytes(
        hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "big", signed=True
    )


# -- conversions -----------------------------------------------------------------


def anomaly_values(a: Anomaly) -> dict:
    return {
        "anomaly_id": a.anomaly_id,
        "user_id": a.user_id,
        "detector": a.detector,
        "detector_version": a.detector_version,
        "score": a.score,
        "severity": int(a.severity),
        "event_ids": json.dumps(a.event_ids),
        "reason": a.reason,
        "observed": a.observed,
        "expected": a.expected,
        "baseline_observations": a.baseline_observations,
        "baseline_mature": int(a.baseline_mature),
        "features": json.dumps([[f.name, f.value, f.contribution] for f in a.features]),
        "occurred_at_us": to_us(a.occurred_at) if a.occurred_at else 0,
        "detected_at_us": to_us(a.detected_at) if a.detected_at else 0,
        "alert_id": a.alert_id,
        "quarantined": int(a.quarantined),
        "tactics": json.dumps(a.tactics),
        "techniques": json.dumps(a.techniques),
    }


def anomaly_from_row(r) -> Anomaly:
    return Anomaly(
        anomaly_id=r.anomaly_id,
        user_id=r.user_id,
        detector=r.detector,
        detector_version=r.detector_version,
        score=r.score,
        severity=Severity(r.severity),
        event_ids=json.loads(r.event_ids),
        reason=r.reason,
        observed=r.observed,
        expected=r.expected,
        baseline_observations=r.baseline_observations,
        baseline_mature=bool(r.baseline_mature),
        features=[Feature(n, v, c) for n, v, c in json.loads(r.features)],
        occurred_at=from_us(r.occurred_at_us),
        detected_at=from_us(r.detected_at_us),
        alert_id=r.alert_id,
        quarantined=bool(r.quarantined),
        tactics=json.loads(r.tactics or "[]"),
        techniques=json.loads(r.techniques or "[]"),
    )


def alert_values(a: Alert) -> dict:
    return {
        "alert_id": a.alert_id,
        "seq": a.seq,
        "user_id": a.user_id,
        "detector": a.detector,
        "severity": int(a.severity),
        "status": a.status.value,
        "title": a.title,
        "reason": a.reason,
        "anomaly_ids": json.dumps(a.anomaly_ids),
        "anomaly_count": a.anomaly_count,
        "user_risk": a.user_risk,
        "first_seen_at_us": to_us(a.first_seen_at),
        "last_seen_at_us": to_us(a.last_seen_at),
        "created_at_us": to_us(a.created_at),
        "updated_at_us": to_us(a.updated_at),
        "acknowledged_at_us": to_us_or_none(a.acknowledged_at),
        "acknowledged_by": a.acknowledged_by,
        "resolved_at_us": to_us_or_none(a.resolved_at),
        "resolved_by": a.resolved_by,
        "resolution": a.resolution.value if a.resolution else "",
        "note": a.note,
        "tactics": json.dumps(a.tactics),
        "techniques": json.dumps(a.techniques),
        "incident_id": a.incident_id,
    }


def alert_from_row(r) -> Alert:
    return Alert(
        alert_id=r.alert_id,
        user_id=r.user_id,
        detector=r.detector,
        severity=Severity(r.severity),
        title=r.title,
        reason=r.reason,
        created_at=from_us(r.created_at_us),
        updated_at=from_us(r.updated_at_us),
        first_seen_at=from_us(r.first_seen_at_us),
        last_seen_at=from_us(r.last_seen_at_us),
        status=AlertStatus(r.status),
        seq=r.seq,
        anomaly_ids=json.loads(r.anomaly_ids),
        anomaly_count=r.anomaly_count,
        user_risk=r.user_risk,
        acknowledged_at=from_us_or_none(r.acknowledged_at_us),
        acknowledged_by=r.acknowledged_by,
        resolved_at=from_us_or_none(r.resolved_at_us),
        resolved_by=r.resolved_by,
        resolution=Resolution(r.resolution) if r.resolution else None,
        note=r.note,
        tactics=json.loads(r.tactics or "[]"),
        techniques=json.loads(r.techniques or "[]"),
        incident_id=r.incident_id or "",
    )


class DetectionRepository:
    """Baselines, named state, anomalies, alerts, suppressions and risk
    inside the transaction of one connection."""

    def __init__(self, conn: Connection, backend: str):
        self._conn = conn
        self.backend = backend

    # -- baselines -----------------------------------------------------------------

    def baseline_versions(self, user_ids: Sequence[str]) -> dict[str, int]:
        """Current versions, locked on PostgreSQL until the transaction ends,
        so two processes never learn into one baseline at once. The users
        are locked, not only their rows: a row lock cannot cover a baseline
        that does not exist yet, and two processes learning a new user's
        first events would each insert version 1, the later commit
        overwriting the earlier. Lock keys are taken in ascending order, so
        two writers cannot deadlock on them.
        (SQLite's BEGIN IMMEDIATE already makes the writer exclusive.)"""
        if not user_ids:
            return {}
        if self.backend == "postgresql":
            keys = sorted({_user_lock_key(u) for u in user_ids})
            cursor = driver_cursor(self._conn)
            try:
                cursor.execute(
                    _PG_LOCK_AND_VERSIONS, (pg_int_array(keys), pg_text_array(sorted(user_ids)))
                )
                return dict(cursor.fetchall())
            finally:
                cursor.close()
        found: dict[str, int] = {}
        for chunk in _chunks(sorted(user_ids)):
            found.update(
                (u, v)
                for u, v in self._conn.execute(
                    select(baselines_t.c.user_id, baselines_t.c.version).where(
                        baselines_t.c.user_id.in_(chunk)
                    )
                )
            )
        return found

    def load_baselines(self, user_ids: Sequence[str]) -> dict[str, tuple[int, dict]]:
        found: dict[str, tuple[int, dict]] = {}
        for chunk in _chunks(list(user_ids)):
            for user_id, version, data in self._conn.execute(
                select(baselines_t.c.user_id, baselines_t.c.version, baselines_t.c.data).where(
                    baselines_t.c.user_id.in_(chunk)
                )
            ):
                found[user_id] = (version, json.loads(data))
        return found

    def save_baselines(self, rows: Iterable[tuple[str, int, dict]], now: datetime) -> None:
        """Writes (user_id, new_version, data) rows, inserting or replacing.

        One statement for the whole group, not an UPDATE per row (ingest's
        hot path). PostgreSQL gets the rows as arrays, so a group of a few
        users (unary calls) costs one round trip. Measurements:
        docs/benchmarks.md."""
        now_us = to_us(now)
        values = [
            (user_id, version, json.dumps(data, separators=(",", ":")), now_us)
            for user_id, version, data in rows
        ]
        if not values:
            return
        cursor = driver_cursor(self._conn)
        try:
            if self.backend == "postgresql":
                user_ids, versions, data, updated = zip(*values, strict=True)
                cursor.execute(
                    _PG_UPSERT_BASELINES,
                    (
                        pg_text_array(list(user_ids)),
                        pg_int_array(versions),
                        pg_text_array(list(data)),
                        pg_int_array(updated),
                    ),
                )
            else:
                cursor.executemany(_UPSERT_BASELINES, values)
        finally:
            cursor.close()

    def delete_baselines(self) -> int:
        return self._conn.execute(delete(baselines_t)).rowcount

    def baseline(self, user_id: str) -> dict | None:
        data = self._conn.execute(
            select(baselines_t.c.data).where(baselines_t.c.user_id == user_id)
        ).scalar_one_or_none()
        return None if data is None else json.loads(data)

    def all_baselines(self, batch: int = 1000) -> Iterable[dict]:
        last = ""
        while True:
            rows = self._conn.execute(
                select(baselines_t.c.user_id, baselines_t.c.data)
                .where(baselines_t.c.user_id > last)
                .order_by(baselines_t.c.user_id)
                .limit(batch)
            ).all()
            for _user_id, data in rows:
                yield json.loads(data)
            if len(rows) < batch:
                return
            last = rows[-1][0]

    # -- named state ---------------------------------------------------------------

    def load_state(self, name: str) -> dict | None:
        data = self._conn.execute(
            select(state_t.c.data).where(state_t.c.name == name)
        ).scalar_one_or_none()
        return None if data is None else json.loads(data)

    def save_state(self, name: str, data: dict, now: datetime) -> None:
        text = json.dumps(data, separators=(",", ":"))
        done = self._conn.execute(
            update(state_t)
            .where(state_t.c.name == name)
            .values(data=text, version=state_t.c.version + 1, updated_at_us=to_us(now))
        ).rowcount
        if not done:
            self._conn.execute(
                insert(state_t).values(name=name, data=text, version=1, updated_at_us=to_us(now))
            )

    # -- events analysed by a partition (the event log's population partitions) ----

    def mark_applied(self, scope: str, event_ids: Sequence[str], now: datetime) -> set[str]:
        """Records the events as analysed in `scope`; returns the ids that
        were not recorded there yet (the others were analysed before)."""
        dialect = postgresql if self.backend == "postgresql" else sqlite
        now_us = to_us(now)
        new: set[str] = set()
        for chunk in _chunks(sorted(set(event_ids)), 300):
            new.update(
                self._conn.execute(
                    dialect.insert(applied_t)
                    .values(
                        [{"scope": scope, "event_id": e, "applied_at_us": now_us} for e in chunk]
                    )
                    .on_conflict_do_nothing()
                    .returning(applied_t.c.event_id)
                ).scalars()
            )
        return new

    def prune_applied(self, before: datetime) -> int:
        """Forgets what was analysed before `before`."""
        return self._conn.execute(
            delete(applied_t).where(applied_t.c.applied_at_us < to_us(before))
        ).rowcount

    def next_seqs(self, count: int) -> list[int]:
        """`count` new alert seq numbers. The counter row stays locked until
        commit, so seq numbers become visible in order across processes."""
        self._conn.execute(
            update(state_t)
            .where(state_t.c.name == ALERT_SEQ)
            .values(version=state_t.c.version + count)
        )
        top = self._conn.execute(
            select(state_t.c.version).where(state_t.c.name == ALERT_SEQ)
        ).scalar_one()
        return list(range(top - count + 1, top + 1))

    def max_seq(self) -> int:
        return self._conn.execute(select(func.coalesce(func.max(alerts_t.c.seq), 0))).scalar_one()

    # -- anomalies -----------------------------------------------------------------

    def insert_anomalies(self, anomalies: Sequence[Anomaly]) -> None:
        if anomalies:
            self._conn.execute(insert(anomalies_t), [anomaly_values(a) for a in anomalies])

    def anomalies_of_alert(self, alert_id: str) -> list[Anomaly]:
        rows = self._conn.execute(
            select(anomalies_t).where(anomalies_t.c.alert_id == alert_id).order_by(anomalies_t.c.id)
        ).all()
        return [anomaly_from_row(r) for r in rows]

    def recent_anomalies_of_alert(self, alert_id: str, limit: int) -> list[Anomaly]:
        """The alert's latest `limit` anomalies, oldest first."""
        rows = self._conn.execute(
            select(anomalies_t)
            .where(anomalies_t.c.alert_id == alert_id)
            .order_by(anomalies_t.c.id.desc())
            .limit(limit)
        ).all()
        return [anomaly_from_row(r) for r in reversed(rows)]

    def release_quarantine(self, alert_id: str) -> None:
        self._conn.execute(
            update(anomalies_t).where(anomalies_t.c.alert_id == alert_id).values(quarantined=0)
        )

    def page_anomalies(
        self,
        limit: int,
        after: tuple[int, int] | None,
        *,
        user_id: str = "",
        detector: str = "",
        min_severity: int = 0,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
    ) -> list[tuple[tuple[int, int], Anomaly]]:
        """Up to `limit` anomalies newest first, after the (occurred_at_us,
        id) key; an empty or None criterion matches all."""
        query = select(anomalies_t)
        if user_id:
            query = query.where(anomalies_t.c.user_id == user_id)
        if detector:
            query = query.where(anomalies_t.c.detector == detector)
        if min_severity:
            query = query.where(anomalies_t.c.severity >= min_severity)
        if start_time:
            query = query.where(anomalies_t.c.occurred_at_us >= to_us(start_time))
        if end_time:
            query = query.where(anomalies_t.c.occurred_at_us < to_us(end_time))
        if after is not None:
            query = query.where(
                tuple_(anomalies_t.c.occurred_at_us, anomalies_t.c.id) < tuple_(*after)
            )
        rows = self._conn.execute(
            query.order_by(anomalies_t.c.occurred_at_us.desc(), anomalies_t.c.id.desc()).limit(
                limit
            )
        ).all()
        return [((r.occurred_at_us, r.id), anomaly_from_row(r)) for r in rows]

    def recent_open_reasons(
        self, user_ids: Sequence[str], per_user: int = 3
    ) -> dict[str, list[str]]:
        """The reasons of each user's strongest anomalies in open alerts."""
        reasons: dict[str, list[str]] = {u: [] for u in user_ids}
        if not user_ids:
            return reasons
        rows = self._conn.execute(
            select(anomalies_t.c.user_id, anomalies_t.c.reason)
            .join(alerts_t, alerts_t.c.alert_id == anomalies_t.c.alert_id)
            .where(
                anomalies_t.c.user_id.in_(list(user_ids)),
                alerts_t.c.status != AlertStatus.RESOLVED.value,
            )
            .order_by(anomalies_t.c.severity.desc(), anomalies_t.c.occurred_at_us.desc())
            .limit(50 * len(user_ids))
        ).all()
        for user_id, reason in rows:
            if len(reasons[user_id]) < per_user and reason not in reasons[user_id]:
                reasons[user_id].append(reason)
        return reasons

    def anomaly_counts(
        self, start: datetime, end: datetime
    ) -> tuple[dict[int, int], dict[str, int]]:
        """Anomalies per hour since the epoch, and per detector, in [start, end)."""
        in_window = and_(
            anomalies_t.c.occurred_at_us >= to_us(start), anomalies_t.c.occurred_at_us < to_us(end)
        )
        hour = anomalies_t.c.occurred_at_us // 3_600_000_000
        per_hour = {
            int(h): n
            for h, n in self._conn.execute(
                select(hour, func.count()).where(in_window).group_by(hour)
            )
        }
        per_detector: dict[str, int] = dict(
            self._conn.execute(
                select(anomalies_t.c.detector, func.count())
                .where(in_window)
                .group_by(anomalies_t.c.detector)
            ).all()
        )
        return per_hour, per_detector

    # -- alerts --------------------------------------------------------------------

    def latest_alert(self, user_id: str, detector: str) -> Alert | None:
        row = self._conn.execute(
            select(alerts_t)
            .where(alerts_t.c.user_id == user_id, alerts_t.c.detector == detector)
            .order_by(alerts_t.c.seq.desc())
            .limit(1)
        ).first()
        return None if row is None else alert_from_row(row)

    def alert(self, alert_id: str, lock: bool = False) -> Alert | None:
        query = select(alerts_t).where(alerts_t.c.alert_id == alert_id)
        if lock and self.backend == "postgresql":
            query = query.with_for_update()
        row = self._conn.execute(query).first()
        return None if row is None else alert_from_row(row)

    def save_alerts(self, alerts: Sequence[Alert], created: set[str]) -> None:
        new = [alert_values(a) for a in alerts if a.alert_id in created]
        changed = [alert_values(a) for a in alerts if a.alert_id not in created]
        if new:
            self._conn.execute(insert(alerts_t), new)
        for values in changed:
            self._conn.execute(
                update(alerts_t).where(alerts_t.c.alert_id == values["alert_id"]).values(**values)
            )

    def alerts_after(self, seq: int, limit: int) -> list[Alert]:
        rows = self._conn.execute(
            select(alerts_t).where(alerts_t.c.seq > seq).order_by(alerts_t.c.seq).limit(limit)
        ).all()
        return [alert_from_row(r) for r in rows]

    def page_alerts(
        self,
        limit: int,
        before_seq: int | None,
        *,
        user_id: str = "",
        detector: str = "",
        min_severity: int = 0,
        status: AlertStatus | None = None,
    ) -> list[Alert]:
        """Up to `limit` alerts by seq, highest first, below `before_seq`;
        an empty or None criterion matches all."""
        query = select(alerts_t)
        if user_id:
            query = query.where(alerts_t.c.user_id == user_id)
        if detector:
            query = query.where(alerts_t.c.detector == detector)
        if min_severity:
            query = query.where(alerts_t.c.severity >= min_severity)
        if status is not None:
            query = query.where(alerts_t.c.status == status.value)
        if before_seq is not None:
            query = query.where(alerts_t.c.seq < before_seq)
        rows = self._conn.execute(query.order_by(alerts_t.c.seq.desc()).limit(limit)).all()
        return [alert_from_row(r) for r in rows]

    def open_alerts_by_severity(self) -> dict[int, int]:
        return dict(
            self._conn.execute(
                select(alerts_t.c.severity, func.count())
                .where(alerts_t.c.status != AlertStatus.RESOLVED.value)
                .group_by(alerts_t.c.severity)
            ).all()
        )

    # -- suppressions and risk ---------------------------------------------------------

    def suppressed_until(self, user_id: str, detector: str) -> datetime | None:
        us = self._conn.execute(
            select(suppressions_t.c.until_us).where(
                suppressions_t.c.user_id == user_id, suppressions_t.c.detector == detector
            )
        ).scalar_one_or_none()
        return from_us_or_none(us)

    def suppress(self, user_id: str, detector: str, until: datetime) -> None:
        self._conn.execute(
            delete(suppressions_t).where(
                suppressions_t.c.user_id == user_id, suppressions_t.c.detector == detector
            )
        )
        self._conn.execute(
            insert(suppressions_t).values(user_id=user_id, detector=detector, until_us=to_us(until))
        )

    def risk(self, user_id: str) -> tuple[float, datetime | None]:
        row = self._conn.execute(
            select(user_risk_t.c.weight_sum, user_risk_t.c.as_of_us).where(
                user_risk_t.c.user_id == user_id
            )
        ).first()
        return (0.0, None) if row is None else (row[0], from_us(row[1]))

    def risks_of(self, user_ids: Sequence[str]) -> dict[str, tuple[float, datetime]]:
        """`risk` of many users at once; users without a row are left out."""
        out: dict[str, tuple[float, datetime]] = {}
        for chunk in _chunks(sorted(set(user_ids))):
            for user_id, weight_sum, as_of_us in self._conn.execute(
                select(
                    user_risk_t.c.user_id, user_risk_t.c.weight_sum, user_risk_t.c.as_of_us
                ).where(user_risk_t.c.user_id.in_(chunk))
            ):
                out[user_id] = (weight_sum, from_us(as_of_us))
        return out

    def save_risks(self, rows: Sequence[tuple[str, float, datetime]]) -> None:
        """(user_id, weight_sum, as_of) rows, inserted or replaced in one
        executemany, in user order (two processes on PostgreSQL lock the
        rows they share in the same order)."""
        if not rows:
            return
        dialect = postgresql if self.backend == "postgresql" else sqlite
        upsert = dialect.insert(user_risk_t)
        self._conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[user_risk_t.c.user_id],
                set_={
                    "weight_sum": upsert.excluded.weight_sum,
                    "as_of_us": upsert.excluded.as_of_us,
                },
            ),
            [
                {"user_id": u, "weight_sum": w, "as_of_us": to_us(t)}
                for u, w, t in sorted(rows, key=lambda r: r[0])
            ],
        )

    def risks(self, min_weight: float = 0.01) -> list[tuple[str, float, datetime]]:
        rows = self._conn.execute(
            select(user_risk_t.c.user_id, user_risk_t.c.weight_sum, user_risk_t.c.as_of_us).where(
                user_risk_t.c.weight_sum >= min_weight
            )
        ).all()
        return [(u, w, from_us(t)) for u, w, t in rows]


def _chunks(items: list, size: int = 500) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
