"""Incidents and their members: rows in and domain objects out, inside a
caller's transaction (the ingest writer's, for every change)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import Connection, func, insert, select, update

from uba.domain.alerts import AlertStatus, Resolution
from uba.domain.anomalies import Anomaly, Severity
from uba.domain.incidents import (
    EntityKind,
    Incident,
    IncidentFilter,
    IncidentStatus,
    Member,
    Signal,
)
from uba.storage.detection import anomaly_from_row
from uba.storage.events import from_us, from_us_or_none, to_us, to_us_or_none
from uba.storage.models import AlertRow, AnomalyRow, EventRow, IncidentMemberRow, IncidentRow

_IN = IncidentRow.__table__
_MEM = IncidentMemberRow.__table__
_AN = AnomalyRow.__table__
_AL = AlertRow.__table__
_EV = EventRow.__table__

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
    def __init__(self, backend: str):
        self.backend = backend

    # -- the writer's side ---------------------------------------------------------

    def open_incidents(
        self, conn: Connection, entity_kind: EntityKind, entity_id: str, limit: int = CANDIDATES
    ) -> list[Incident]:
        """The entity's open (or acknowledged) incidents, newest first; on
        PostgreSQL locked until commit, so that a resolution committed by
        another process meanwhile is seen (the row then no longer matches)
        instead of being overwritten. Lock order everywhere: incidents, then
        alerts."""
        query = (
            select(_IN)
            .where(
                _IN.c.entity_kind == entity_kind.value,
                _IN.c.entity_id == entity_id,
                _IN.c.status != IncidentStatus.RESOLVED.value,
            )
            .order_by(_IN.c.seq.desc())
            .limit(limit)
        )
        if self.backend == "postgresql":
            query = query.with_for_update()
        rows = conn.execute(query).all()
        return [incident_from_row(r) for r in rows]

    def open_campaigns(
        self, conn: Connection, since: datetime, limit: int = CANDIDATES
    ) -> list[Incident]:
        """Open incidents about source addresses (campaigns) seen since
        `since`, newest first; locked on PostgreSQL as open_incidents."""
        query = (
            select(_IN)
            .where(
                _IN.c.entity_kind == EntityKind.SOURCE_IP.value,
                _IN.c.status != IncidentStatus.RESOLVED.value,
                _IN.c.last_seen_at_us >= to_us(since),
            )
            .order_by(_IN.c.seq.desc())
            .limit(limit)
        )
        if self.backend == "postgresql":
            query = query.with_for_update()
        return [incident_from_row(r) for r in conn.execute(query).all()]

    def pending_members(self, conn: Connection, user_id: str, since: datetime) -> list[Member]:
        """The user's alerted anomalies since `since` whose alert is in no
        incident and not resolved, oldest first."""
        return self._pending(conn, _AN.c.user_id == user_id, since)

    def pending_population(
        self, conn: Connection, detectors: Sequence[str], since: datetime
    ) -> list[Member]:
        """The same for the population detectors' anomalies, any user."""
        return self._pending(conn, _AN.c.detector.in_(list(detectors)), since)

    def _pending(self, conn: Connection, which, since: datetime) -> list[Member]:
        rows = conn.execute(
            select(_AN, _AL.c.title.label("alert_title"))
            .join(_AL, _AL.c.alert_id == _AN.c.alert_id)
            .where(
                which,
                _AN.c.occurred_at_us >= to_us(since),
                _AL.c.incident_id == "",
                _AL.c.status != AlertStatus.RESOLVED.value,
            )
            .order_by(_AN.c.occurred_at_us.desc(), _AN.c.id.desc())
            .limit(PENDING)
        ).all()
        anomalies = [(anomaly_from_row(r), r.alert_title) for r in reversed(rows)]
        last_event = {a.anomaly_id: a.event_ids[-1] for a, _ in anomalies if a.event_ids}
        where = {
            e.event_id: (e.session_id, e.source_ip)
            for e in conn.execute(
                select(_EV.c.event_id, _EV.c.session_id, _EV.c.source_ip).where(
                    _EV.c.event_id.in_(set(last_event.values()))
                )
            )
        }
        members = []
        for a, title in anomalies:
            session_id, source_ip = where.get(last_event.get(a.anomaly_id, ""), ("", ""))
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
                )
            )
        return members

    def link_alerts(self, conn: Connection, incident_of_alert: Mapping[str, str]) -> None:
        """Records the incident that alerts (pending until now) joined."""
        for alert_id, incident_id in incident_of_alert.items():
            conn.execute(
                update(_AL).where(_AL.c.alert_id == alert_id).values(incident_id=incident_id)
            )

    def incident(self, conn: Connection, incident_id: str, lock: bool = False) -> Incident | None:
        query = select(_IN).where(_IN.c.incident_id == incident_id)
        if lock and self.backend == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        return None if row is None else incident_from_row(row)

    def incidents_of_alert(self, conn: Connection, alert_id: str) -> list[Incident]:
        """The incidents an alert's anomalies belong to (locked on PostgreSQL)."""
        ids = select(_MEM.c.incident_id).where(_MEM.c.alert_id == alert_id).distinct()
        query = select(_IN).where(_IN.c.incident_id.in_(ids)).order_by(_IN.c.incident_id)
        if self.backend == "postgresql":
            query = query.with_for_update()
        rows = conn.execute(query).all()
        return [incident_from_row(r) for r in rows]

    def save_incidents(
        self, conn: Connection, incidents: Sequence[Incident], created: set[str]
    ) -> None:
        new = [incident_values(i) for i in incidents if i.incident_id in created]
        changed = [incident_values(i) for i in incidents if i.incident_id not in created]
        if new:
            conn.execute(insert(_IN), new)
        for values in changed:
            conn.execute(
                update(_IN).where(_IN.c.incident_id == values["incident_id"]).values(**values)
            )

    def add_members(
        self, conn: Connection, rows: Sequence[tuple[str, str, str, str, datetime]]
    ) -> None:
        """(incident_id, anomaly_id, alert_id, user_id, occurred_at) rows."""
        if rows:
            conn.execute(
                insert(_MEM),
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

    def incidents_after(self, conn: Connection, seq: int, limit: int) -> list[Incident]:
        rows = conn.execute(
            select(_IN).where(_IN.c.seq > seq).order_by(_IN.c.seq).limit(limit)
        ).all()
        return [incident_from_row(r) for r in rows]

    def max_seq(self, conn: Connection) -> int:
        return conn.execute(select(func.coalesce(func.max(_IN.c.seq), 0))).scalar_one()

    def page_incidents(
        self, conn: Connection, flt: IncidentFilter, limit: int, before_seq: int | None
    ) -> list[Incident]:
        query = select(_IN)
        if flt.user_id:
            members = select(_MEM.c.incident_id).where(_MEM.c.user_id == flt.user_id)
            query = query.where(
                (_IN.c.incident_id.in_(members))
                | ((_IN.c.entity_kind == EntityKind.USER.value) & (_IN.c.entity_id == flt.user_id))
            )
        if flt.status is not None:
            query = query.where(_IN.c.status == flt.status.value)
        if flt.min_severity:
            query = query.where(_IN.c.severity >= flt.min_severity)
        if flt.tactic:
            # Ids are plain "TA0001" strings inside a JSON list.
            query = query.where(_IN.c.tactics.contains(f'"{flt.tactic}"', autoescape=True))
        if flt.start_time:
            query = query.where(_IN.c.last_seen_at_us >= to_us(flt.start_time))
        if flt.end_time:
            query = query.where(_IN.c.first_seen_at_us < to_us(flt.end_time))
        if before_seq is not None:
            query = query.where(_IN.c.seq < before_seq)
        rows = conn.execute(query.order_by(_IN.c.seq.desc()).limit(limit)).all()
        return [incident_from_row(r) for r in rows]

    def member_anomalies(
        self, conn: Connection, incident_id: str, limit: int = 1000
    ) -> list[Anomaly]:
        """The incident's anomalies, oldest first (the latest `limit`)."""
        rows = conn.execute(
            select(_AN)
            .join(_MEM, _MEM.c.anomaly_id == _AN.c.anomaly_id)
            .where(_MEM.c.incident_id == incident_id)
            .order_by(_MEM.c.occurred_at_us.desc(), _AN.c.id.desc())
            .limit(limit)
        ).all()
        return [anomaly_from_row(r) for r in reversed(rows)]
