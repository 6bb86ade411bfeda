"""Incidents and their members: rows in and domain objects out, inside a
caller's transaction (the ingest writer's, for every change)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import Connection, func, insert, select, union, update

from uba.domain.alerts import AlertStatus, Resolution
from uba.domain.anomalies import Anomaly, Severity
from uba.domain.events import ActivityType
from uba.domain.incidents import EntityKind, Incident, IncidentStatus, Member, Signal
from uba.storage.detection import anomaly_from_row
from uba.storage.events import from_us, from_us_or_none, to_us, to_us_or_none, with_event_ids
from uba.storage.models import (
    AlertRow,
    AnomalyRow,
    EventRow,
    IncidentMemberRow,
    IncidentRow,
    table_of,
)

incidents_t = table_of(IncidentRow)
members_t = table_of(IncidentMemberRow)
anomalies_t = table_of(AnomalyRow)
alerts_t = table_of(AlertRow)
events_t = table_of(EventRow)

# Open incidents of one entity considered for a new member (newest first).
CANDIDATES = 20
# Pending members read for one user or for the population detectors.
PENDING = 200


def incident_values(i: Incident) -> dict:
    return {
        "incident_id": i.incident_id,
        "seq": i.seq,
        "entity_kind": i.entity_kind.value,
        "entity_id": i.entity_id,
        "title": i.title,
        "severity": int(i.severity),
        "score": i.score,
        "status": i.status.value,
        "tactics": json.dumps(i.tactics),
        "techniques": json.dumps(i.techniques),
        "anomaly_count": i.anomaly_count,
        "first_seen_at_us": to_us(i.first_seen_at),
        "last_seen_at_us": to_us(i.last_seen_at),
        "created_at_us": to_us(i.created_at),
        "updated_at_us": to_us(i.updated_at),
        "acknowledged_at_us": to_us_or_none(i.acknowledged_at),
        "acknowledged_by": i.acknowledged_by,
        "resolved_at_us": to_us_or_none(i.resolved_at),
        "resolved_by": i.resolved_by,
        "resolution": i.resolution.value if i.resolution else "",
        "note": i.note,
        "data": json.dumps(
            {
                "signals": [s.to_dict() for s in i.signals],
                "session_ids": i.session_ids,
                "user_ids": i.user_ids,
                "source_ips": i.source_ips,
                "anomaly_ids": i.anomaly_ids,
                "risk_weight": i.risk_weight,
                "risk_at_us": to_us_or_none(i.risk_at),
                "risk_users": i.risk_users,
            },
            separators=(",", ":"),
        ),
    }


def incident_from_row(r) -> Incident:
    data = json.loads(r.data)
    return Incident(
        incident_id=r.incident_id,
        entity_kind=EntityKind(r.entity_kind),
        entity_id=r.entity_id,
        title=r.title,
        severity=Severity(r.severity),
        score=r.score,
        created_at=from_us(r.created_at_us),
        updated_at=from_us(r.updated_at_us),
        first_seen_at=from_us(r.first_seen_at_us),
        last_seen_at=from_us(r.last_seen_at_us),
        status=IncidentStatus(r.status),
        seq=r.seq,
        signals=[Signal.from_dict(s) for s in data.get("signals", [])],
        session_ids=data.get("session_ids", []),
        user_ids=data.get("user_ids", []),
        source_ips=data.get("source_ips", []),
        tactics=json.loads(r.tactics),
        techniques=json.loads(r.techniques),
        anomaly_ids=data.get("anomaly_ids", []),
        anomaly_count=r.anomaly_count,
        acknowledged_at=from_us_or_none(r.acknowledged_at_us),
        acknowledged_by=r.acknowledged_by,
        resolved_at=from_us_or_none(r.resolved_at_us),
        resolved_by=r.resolved_by,
        resolution=Resolution(r.resolution) if r.resolution else None,
        note=r.note,
        risk_weight=data.get("risk_weight", 0.0),
        risk_at=from_us_or_none(data.get("risk_at_us")),
        risk_users=data.get("risk_users", []),
    )


class IncidentRepository:
    """Incidents and their members inside the transaction of one connection."""

    def __init__(self, conn: Connection, backend: str):
        self._conn = conn
        self.backend = backend

    # -- the writer's side ---------------------------------------------------------

    def open_incidents(
        self, entity_kind: EntityKind, entity_id: str, limit: int = CANDIDATES
    ) -> list[Incident]:
        """The entity's open (or acknowledged) incidents, newest first; on
        PostgreSQL locked until commit, so that a resolution committed by
        another process meanwhile is seen (the row then no longer matches)
        instead of being overwritten. Lock order everywhere: incidents, then
        alerts."""
        query = (
            select(incidents_t)
            .where(
                incidents_t.c.entity_kind == entity_kind.value,
                incidents_t.c.entity_id == entity_id,
                incidents_t.c.status != IncidentStatus.RESOLVED.value,
            )
            .order_by(incidents_t.c.seq.desc())
            .limit(limit)
        )
        if self.backend == "postgresql":
            query = query.with_for_update()
        rows = self._conn.execute(query).all()
        return [incident_from_row(r) for r in rows]

    def open_campaigns(self, since: datetime, limit: int = CANDIDATES) -> list[Incident]:
        """Open incidents about source addresses (campaigns) seen since
        `since`, newest first; locked on PostgreSQL as open_incidents."""
        query = (
            select(incidents_t)
            .where(
                incidents_t.c.entity_kind == EntityKind.SOURCE_IP.value,
                incidents_t.c.status != IncidentStatus.RESOLVED.value,
                incidents_t.c.last_seen_at_us >= to_us(since),
            )
            .order_by(incidents_t.c.seq.desc())
            .limit(limit)
        )
        if self.backend == "postgresql":
            query = query.with_for_update()
        return [incident_from_row(r) for r in self._conn.execute(query).all()]

    def pending_members(self, user_id: str, since: datetime) -> list[Member]:
        """The user's alerted anomalies since `since` whose alert is in no
        incident and not resolved, oldest first."""
        return self._pending(anomalies_t.c.user_id == user_id, since)

    def pending_population(self, detectors: Sequence[str], since: datetime) -> list[Member]:
        """The same for the population detectors' anomalies, any user."""
        return self._pending(anomalies_t.c.detector.in_(list(detectors)), since)

    def _pending(self, which, since: datetime) -> list[Member]:
        rows = self._conn.execute(
            select(anomalies_t, alerts_t.c.title.label("alert_title"))
            .join(alerts_t, alerts_t.c.alert_id == anomalies_t.c.alert_id)
            .where(
                which,
                anomalies_t.c.occurred_at_us >= to_us(since),
                alerts_t.c.incident_id == "",
                alerts_t.c.status != AlertStatus.RESOLVED.value,
            )
            .order_by(anomalies_t.c.occurred_at_us.desc(), anomalies_t.c.id.desc())
            .limit(PENDING)
        ).all()
        anomalies = [(anomaly_from_row(r), r.alert_title) for r in reversed(rows)]
        last_event = {a.anomaly_id: a.event_ids[-1] for a, _ in anomalies if a.event_ids}
        located = with_event_ids(self._conn, self.backend, last_event.values())
        where = {
            e.event_id: (e.session_id, e.source_ip, e.type)
            for e in (
                self._conn.execute(
                    select(
                        events_t.c.event_id,
                        events_t.c.session_id,
                        events_t.c.source_ip,
                        events_t.c.type,
                    ).where(*located)
                )
                if located is not None
                else ()
            )
        }
        members = []
        for a, title in anomalies:
            session_id, source_ip, kind = where.get(last_event.get(a.anomaly_id, ""), ("", "", ""))
            members.append(
                Member(
                    anomaly_id=a.anomaly_id,
                    alert_id=a.alert_id,
                    user_id=a.user_id,
                    detector=a.detector,
                    severity=a.severity,
                    occurred_at=a.occurred_at or a.detected_at or since,
                    title=title,
                    session_id=session_id or "",
                    source_ip=source_ip or "",
                    tactics=tuple(a.tactics),
                    techniques=tuple(a.techniques),
                    failed_login=kind == ActivityType.LOGIN_FAILURE.value,
                )
            )
        return members

    def link_alerts(self, incident_of_alert: Mapping[str, str]) -> None:
        """Records the incident that alerts (pending until now) joined."""
        for alert_id, incident_id in incident_of_alert.items():
            self._conn.execute(
                update(alerts_t)
                .where(alerts_t.c.alert_id == alert_id)
                .values(incident_id=incident_id)
            )

    def incident(self, incident_id: str, lock: bool = False) -> Incident | None:
        query = select(incidents_t).where(incidents_t.c.incident_id == incident_id)
        if lock and self.backend == "postgresql":
            query = query.with_for_update()
        row = self._conn.execute(query).first()
        return None if row is None else incident_from_row(row)

    def incidents_of_alert(self, alert_id: str) -> list[Incident]:
        """The incidents an alert's anomalies belong to (locked on PostgreSQL)."""
        ids = select(members_t.c.incident_id).where(members_t.c.alert_id == alert_id).distinct()
        query = (
            select(incidents_t)
            .where(incidents_t.c.incident_id.in_(ids))
            .order_by(incidents_t.c.incident_id)
        )
        if self.backend == "postgresql":
            query = query.with_for_update()
        rows = self._conn.execute(query).all()
        return [incident_from_row(r) for r in rows]

    def save_incidents(self, incidents: Sequence[Incident], created: set[str]) -> None:
        new = [incident_values(i) for i in incidents if i.incident_id in created]
        changed = [incident_values(i) for i in incidents if i.incident_id not in created]
        if new:
            self._conn.execute(insert(incidents_t), new)
        for values in changed:
            self._conn.execute(
                update(incidents_t)
                .where(incidents_t.c.incident_id == values["incident_id"])
                .values(**values)
            )

    def add_members(self, rows: Sequence[tuple[str, str, str, str, datetime]]) -> None:
        """(incident_id, anomaly_id, alert_id, user_id, occurred_at) rows."""
        if rows:
            self._conn.execute(
                insert(members_t),
                [
                    {
                        "incident_id": i,
                        "anomaly_id": a,
                        "alert_id": al,
                        "user_id": u,
                        "occurred_at_us": to_us(t),
                    }
                    for i, a, al, u, t in rows
                ],
            )

    # -- reads -----------------------------------------------------------------------

    def incidents_after(self, seq: int, limit: int) -> list[Incident]:
        rows = self._conn.execute(
            select(incidents_t)
            .where(incidents_t.c.seq > seq)
            .order_by(incidents_t.c.seq)
            .limit(limit)
        ).all()
        return [incident_from_row(r) for r in rows]

    def max_seq(self) -> int:
        return self._conn.execute(
            select(func.coalesce(func.max(incidents_t.c.seq), 0))
        ).scalar_one()

    def page_incidents(
        self,
        limit: int,
        before_seq: int | None,
        *,
        user_id: str = "",
        status: IncidentStatus | None = None,
        min_severity: int = 0,
        tactic: str = "",
        start_time: datetime | None = None,
        end_time: datetime | None = None,
    ) -> list[Incident]:
        """Up to `limit` incidents by seq, highest first, below `before_seq`:
        the user's (as the entity or a member), in a status, of a severity,
        with an ATT&CK tactic, seen in [start_time, end_time); an empty or
        None criterion matches all."""
        query = select(incidents_t)
        if user_id:
            # One IN over a UNION, so that each half is an index lookup (an
            # OR of the two makes PostgreSQL filter every incident by seq).
            members = select(members_t.c.incident_id).where(members_t.c.user_id == user_id)
            entity = select(incidents_t.c.incident_id).where(
                incidents_t.c.entity_kind == EntityKind.USER.value,
                incidents_t.c.entity_id == user_id,
            )
            query = query.where(incidents_t.c.incident_id.in_(union(members, entity)))
        if status is not None:
            query = query.where(incidents_t.c.status == status.value)
        if min_severity:
            query = query.where(incidents_t.c.severity >= min_severity)
        if tactic:
            # Ids are plain "TA0001" strings inside a JSON list.
            query = query.where(incidents_t.c.tactics.contains(f'"{tactic}"', autoescape=True))
        if start_time:
            query = query.where(incidents_t.c.last_seen_at_us >= to_us(start_time))
        if end_time:
            query = query.where(incidents_t.c.first_seen_at_us < to_us(end_time))
        if before_seq is not None:
            query = query.where(incidents_t.c.seq < before_seq)
        rows = self._conn.execute(query.order_by(incidents_t.c.seq.desc()).limit(limit)).all()
        return [incident_from_row(r) for r in rows]

    def member_anomalies(self, incident_id: str, limit: int = 1000) -> list[Anomaly]:
        """The incident's anomalies, oldest first (the latest `limit`)."""
        rows = self._conn.execute(
            select(anomalies_t)
            .join(members_t, members_t.c.anomaly_id == anomalies_t.c.anomaly_id)
            .where(members_t.c.incident_id == incident_id)
            .order_by(members_t.c.occurred_at_us.desc(), anomalies_t.c.id.desc())
            .limit(limit)
        ).all()
        return [anomaly_from_row(r) for r in reversed(rows)]
