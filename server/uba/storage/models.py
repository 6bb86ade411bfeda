"""SQLAlchemy 2.0 typed models: the schema, one class per table.

Times are stored as integer microseconds since the Unix epoch (UTC): exact,
sortable, and the same on SQLite and PostgreSQL (SQLite has no timestamp
type with a zone).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Alembic-friendly constraint names, stable across both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY (its rowid).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def table_of(model: type[Base]) -> Table:
    """The Core table of a model, for the repositories' Core statements
    (SQLAlchemy declares `__table__` as the wider FromClause)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


class EventRow(Base):
    """An activity event. Append-only; `event_id` is the idempotency key.

    On PostgreSQL (migration 0012) the table is partitioned by
    `occurred_at_us` and has neither the primary key on `id` (still unique:
    one sequence) nor the unique index on `event_id`: a unique index of a
    partitioned table must hold the partition key, so the idempotency keys
    are in `event_keys` (EventKeyRow)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(128), unique=True)
    user_id: Mapped[str] = mapped_column(String(256))
    type: Mapped[str] = mapped_column(String(32))
    occurred_at_us: Mapped[int] = mapped_column(BigInteger)
    received_at_us: Mapped[int] = mapped_column(BigInteger)
    source_ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(1024), default="")
    device_id: Mapped[str] = mapped_column(String(256), default="")
    session_id: Mapped[str] = mapped_column(String(256), default="")
    country_code: Mapped[str] = mapped_column(String(2), default="")
    city: Mapped[str] = mapped_column(String(128), default="")
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    timezone: Mapped[str] = mapped_column(String(64), default="")
    peer_group: Mapped[str] = mapped_column(String(128), default="")
    api_method: Mapped[str] = mapped_column(String(16), default="")
    api_path: Mapped[str] = mapped_column(String(2048), default="")
    status_code: Mapped[int] = mapped_column(Integer, default=0)
    bytes_transferred: Mapped[int] = mapped_column(BigInteger, default=0)
    session_duration_us: Mapped[int | None] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(128), default="")
    # JSON object of the free-form attributes; NULL when there are none.
    attributes: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # Newest-first listing and time-window counts.
        Index("ix_events_occurred", "occurred_at_us", "id"),
        # Per-user history: listing, baselines, backfill.
        Index("ix_events_user_occurred", "user_id", "occurred_at_us", "id"),
        Index("ix_events_type_occurred", "type", "occurred_at_us"),
        Index("ix_events_source_ip_occurred", "source_ip", "occurred_at_us"),
    )


class EventKeyRow(Base):
    """PostgreSQL only (migration 0012): the idempotency key of every stored
    event, with when it occurred (which partition holds it) and when it was
    first received (what a duplicate is answered). No index on the time:
    the keys of an expired day are found through its partition."""

    __tablename__ = "event_keys"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    occurred_at_us: Mapped[int] = mapped_column(BigInteger)
    received_at_us: Mapped[int] = mapped_column(BigInteger)


# Column order used by the bulk insert (everything but the surrogate key).
EVENT_INSERT_COLUMNS = tuple(c.name for c in EventRow.__table__.columns if c.name != "id")


class BaselineRow(Base):
    """A user's baseline as JSON. `version` grows with every write, so a
    process can tell whether its cached copy is still current."""

    __tablename__ = "baselines"

    user_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[str] = mapped_column(Text)
    updated_at_us: Mapped[int] = mapped_column(BigInteger)


class StateRow(Base):
    """Named state shared by a deployment: detector windows, priors, and the
    alert sequence counter (whose row lock orders alert commits)."""

    __tablename__ = "state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[str] = mapped_column(Text)
    updated_at_us: Mapped[int] = mapped_column(BigInteger)


class AppliedEventRow(Base):
    """Events the population detectors of one partition of the event log
    have analysed (docs/scaling.md): a message delivered again (after a
    crash, a lost lease, a retry past JetStream's duplicate window) is
    recognised and not analysed twice. `scope` names the partition; rows
    are pruned after some days."""

    __tablename__ = "applied_events"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    applied_at_us: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_applied_events_applied", "applied_at_us"),)


class AnomalyRow(Base):
    __tablename__ = "anomalies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    anomaly_id: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(String(256))
    detector: Mapped[str] = mapped_column(String(64))
    detector_version: Mapped[str] = mapped_column(String(32))
    score: Mapped[float] = mapped_column(Float)
    severity: Mapped[int] = mapped_column(Integer)
    event_ids: Mapped[str] = mapped_column(Text)  # JSON list
    reason: Mapped[str] = mapped_column(Text)
    observed: Mapped[str] = mapped_column(Text)
    expected: Mapped[str] = mapped_column(Text)
    baseline_observations: Mapped[int] = mapped_column(BigInteger)
    baseline_mature: Mapped[int] = mapped_column(Integer)
    features: Mapped[str] = mapped_column(Text)  # JSON list of [name, value, contribution]
    occurred_at_us: Mapped[int] = mapped_column(BigInteger)
    detected_at_us: Mapped[int] = mapped_column(BigInteger)
    alert_id: Mapped[str] = mapped_column(String(64))
    quarantined: Mapped[int] = mapped_column(Integer)
    # JSON lists of MITRE ATT&CK ids (migration 0007).
    tactics: Mapped[str] = mapped_column(Text, server_default="[]")
    techniques: Mapped[str] = mapped_column(Text, server_default="[]")

    __table_args__ = (
        Index("ix_anomalies_occurred", "occurred_at_us", "id"),
        Index("ix_anomalies_user_occurred", "user_id", "occurred_at_us", "id"),
        Index("ix_anomalies_detector_occurred", "detector", "occurred_at_us"),
        Index("ix_anomalies_alert", "alert_id"),
    )


class AlertRow(Base):
    """An alert in its latest state; `seq` is re-assigned on every change."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(String(64), unique=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    user_id: Mapped[str] = mapped_column(String(256))
    detector: Mapped[str] = mapped_column(String(64))
    severity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    anomaly_ids: Mapped[str] = mapped_column(Text)  # JSON list, latest first
    anomaly_count: Mapped[int] = mapped_column(BigInteger)
    user_risk: Mapped[int] = mapped_column(Integer)
    first_seen_at_us: Mapped[int] = mapped_column(BigInteger)
    last_seen_at_us: Mapped[int] = mapped_column(BigInteger)
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    updated_at_us: Mapped[int] = mapped_column(BigInteger)
    acknowledged_at_us: Mapped[int | None] = mapped_column(BigInteger)
    acknowledged_by: Mapped[str] = mapped_column(String(256))
    resolved_at_us: Mapped[int | None] = mapped_column(BigInteger)
    resolved_by: Mapped[str] = mapped_column(String(256))
    resolution: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text)
    # JSON lists of MITRE ATT&CK ids, and the incident it was last
    # correlated into (migration 0007).
    tactics: Mapped[str] = mapped_column(Text, server_default="[]")
    techniques: Mapped[str] = mapped_column(Text, server_default="[]")
    incident_id: Mapped[str] = mapped_column(String(64), server_default="")

    __table_args__ = (
        Index("ix_alerts_user_detector_status", "user_id", "detector", "status"),
        Index("ix_alerts_status_severity", "status", "severity"),
        Index("ix_alerts_incident", "incident_id"),
    )


class IncidentRow(Base):
    """An incident in its latest state; `seq` comes from the alerts'
    sequence and is re-assigned on every change."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(64), unique=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    entity_kind: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(256))
    title: Mapped[str] = mapped_column(Text)
    severity: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    tactics: Mapped[str] = mapped_column(Text)  # JSON list
    techniques: Mapped[str] = mapped_column(Text)  # JSON list
    anomaly_count: Mapped[int] = mapped_column(BigInteger)
    first_seen_at_us: Mapped[int] = mapped_column(BigInteger)
    last_seen_at_us: Mapped[int] = mapped_column(BigInteger)
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    updated_at_us: Mapped[int] = mapped_column(BigInteger)
    acknowledged_at_us: Mapped[int | None] = mapped_column(BigInteger)
    acknowledged_by: Mapped[str] = mapped_column(String(256))
    resolved_at_us: Mapped[int | None] = mapped_column(BigInteger)
    resolved_by: Mapped[str] = mapped_column(String(256))
    resolution: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text)
    # JSON object: signals (the score breakdown), session and user ids,
    # the latest anomaly ids, and the risk contribution it holds.
    data: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        Index("ix_incidents_entity_status", "entity_kind", "entity_id", "status"),
        # A status filter pages by seq within the status (no sort of them all).
        Index("ix_incidents_status_seq", "status", "seq"),
    )


class IncidentMemberRow(Base):
    """An anomaly's membership of an incident (every anomaly of an alert
    belongs to one incident)."""

    __tablename__ = "incident_members"

    incident_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    anomaly_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(256))
    occurred_at_us: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_incident_members_user", "user_id", "incident_id"),
        Index("ix_incident_members_alert", "alert_id"),
        Index("ix_incident_members_anomaly", "anomaly_id"),
    )


class SuppressionRow(Base):
    """A user+detector kept quiet after a benign or false-positive resolution."""

    __tablename__ = "suppressions"

    user_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    detector: Mapped[str] = mapped_column(String(64), primary_key=True)
    until_us: Mapped[int] = mapped_column(BigInteger)


class UserRiskRow(Base):
    """A user's decayed anomaly weight (RiskAccumulator) as of a time."""

    __tablename__ = "user_risk"

    user_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    weight_sum: Mapped[float] = mapped_column(Float)
    as_of_us: Mapped[int] = mapped_column(BigInteger)


class ApiKeyRow(Base):
    """An API key. Only the SHA-256 digest of the token is stored: the token
    is shown once, when the key is created."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)  # public, e.g. key_1f2e3d4c
    name: Mapped[str] = mapped_column(String(128), unique=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # hex SHA-256 of the token
    scopes: Mapped[str] = mapped_column(String(128))  # space-separated
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    expires_at_us: Mapped[int | None] = mapped_column(BigInteger)
    revoked_at_us: Mapped[int | None] = mapped_column(BigInteger)


class AuditRow(Base):
    """One entry of the audit trail. Append-only (triggers refuse UPDATE and
    DELETE, see migration 0003, and TRUNCATE or REPLACE, see 0005)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    occurred_at_us: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(512))
    peer: Mapped[str] = mapped_column(String(1024))
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(512))

    __table_args__ = (
        Index("ix_audit_log_actor", "actor", "id"),
        Index("ix_audit_log_action", "action", "id"),
    )


class EventRollupRow(Base):
    """Events per hour and type, kept with the events in one transaction, so
    the dashboard reads a few rows per hour instead of every event."""

    __tablename__ = "event_rollup"

    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # hours since the epoch (UTC)
    type: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class UserHourRow(Base):
    """The users active in each hour, for distinct-user counts of a window."""

    __tablename__ = "user_hours"

    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(256), primary_key=True)


class NotificationRow(Base):
    """The outbox: one message to one destination, written in the
    transaction of the alert or incident change it reports; `id` is the
    order a destination receives its messages in."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(40), unique=True)
    destination: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    severity: Mapped[int] = mapped_column(Integer)
    payload: Mapped[str] = mapped_column(Text)  # the envelope, JSON
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered, dead
    attempts: Mapped[int] = mapped_column(Integer)
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    next_attempt_us: Mapped[int] = mapped_column(BigInteger)
    delivered_at_us: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str] = mapped_column(String(1024))

    __table_args__ = (Index("ix_notifications_destination_status", "destination", "status", "id"),)


class DeliveryLeaseRow(Base):
    """Which server process delivers a destination's messages, until when:
    one sender per destination keeps its messages in order, and several
    processes on one database send each message once."""

    __tablename__ = "delivery_leases"

    destination: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    until_us: Mapped[int] = mapped_column(BigInteger)


class PseudonymSecretRow(Base):
    """The per-database key of erasure pseudonyms (one row, migration 0010)."""

    __tablename__ = "pseudonym_secret"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    secret: Mapped[str] = mapped_column(String(64))


class ErasureRow(Base):
    """One erasure applied in one partition of the event log (migration
    0014, docs/scaling.md): that it was applied, what it erased, and its
    position in the partition, under the user's pseudonym only."""

    __tablename__ = "erasures"

    erasure_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(BigInteger)
    events_deleted: Mapped[int] = mapped_column(BigInteger)
    records_deleted: Mapped[int] = mapped_column(BigInteger)
    records_pseudonymised: Mapped[int] = mapped_column(BigInteger)
    applied_at_us: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_erasures_scope", "scope", "position"),
        Index("ix_erasures_applied_at_us", "applied_at_us"),
    )


class AuditGrantRow(Base):
    """A grant that lets the audit triggers pass one kind of change; it only
    ever exists inside the transaction that makes the change (migration 0010)."""

    __tablename__ = "audit_grants"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(64))


class TrainedModelRow(Base):
    """A trained model version (migration 0013): its metadata as JSON and
    the serialized estimator, shared by every process on the database so
    that the front end that trains and the workers that score use one
    model. The newest row of a name (highest id) is the current version."""

    __tablename__ = "trained_models"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    info: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (
        UniqueConstraint("name", "version", name="uq_trained_models_name_version"),
        Index("ix_trained_models_name_id", "name", "id"),
    )
