import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from uba.v1 import alerts_pb2 as _alerts_pb2
from uba.v1 import anomalies_pb2 as _anomalies_pb2
from uba.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IncidentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INCIDENT_STATUS_UNSPECIFIED: _ClassVar[IncidentStatus]
    INCIDENT_STATUS_OPEN: _ClassVar[IncidentStatus]
    INCIDENT_STATUS_ACKNOWLEDGED: _ClassVar[IncidentStatus]
    INCIDENT_STATUS_RESOLVED: _ClassVar[IncidentStatus]

class EntityKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTITY_KIND_UNSPECIFIED: _ClassVar[EntityKind]
    ENTITY_KIND_USER: _ClassVar[EntityKind]
    ENTITY_KIND_SOURCE_ADDRESS: _ClassVar[EntityKind]
INCIDENT_STATUS_UNSPECIFIED: IncidentStatus
INCIDENT_STATUS_OPEN: IncidentStatus
INCIDENT_STATUS_ACKNOWLEDGED: IncidentStatus
INCIDENT_STATUS_RESOLVED: IncidentStatus
ENTITY_KIND_UNSPECIFIED: EntityKind
ENTITY_KIND_USER: EntityKind
ENTITY_KIND_SOURCE_ADDRESS: EntityKind

class IncidentSignal(_message.Message):
    __slots__ = ("alert_id", "user_id", "detector", "title", "severity", "anomaly_count", "probability", "counted", "active", "first_seen_at", "last_seen_at", "tactics", "techniques")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_COUNT_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    COUNTED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    TACTICS_FIELD_NUMBER: _ClassVar[int]
    TECHNIQUES_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    user_id: str
    detector: str
    title: str
    severity: _anomalies_pb2.Severity
    anomaly_count: int
    probability: float
    counted: bool
    active: bool
    first_seen_at: _timestamp_pb2.Timestamp
    last_seen_at: _timestamp_pb2.Timestamp
    tactics: _containers.RepeatedCompositeFieldContainer[_anomalies_pb2.AttackTactic]
    techniques: _containers.RepeatedCompositeFieldContainer[_anomalies_pb2.AttackTechnique]
    def __init__(self, alert_id: _Optional[str] = ..., user_id: _Optional[str] = ..., detector: _Optional[str] = ..., title: _Optional[str] = ..., severity: _Optional[_Union[_anomalies_pb2.Severity, str]] = ..., anomaly_count: _Optional[int] = ..., probability: _Optional[float] = ..., counted: _Optional[bool] = ..., active: _Optional[bool] = ..., first_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tactics: _Optional[_Iterable[_Union[_anomalies_pb2.AttackTactic, _Mapping]]] = ..., techniques: _Optional[_Iterable[_Union[_anomalies_pb2.AttackTechnique, _Mapping]]] = ...) -> None: ...

class Incident(_message.Message):
    __slots__ = ("incident_id", "seq", "entity_kind", "entity_id", "title", "severity", "score", "status", "signals", "tactics", "techniques", "alert_ids", "anomaly_ids", "anomaly_count", "user_ids", "session_ids", "first_seen_at", "last_seen_at", "created_at", "updated_at", "acknowledged_at", "acknowledged_by", "resolved_at", "resolved_by", "resolution", "note", "source_ips")
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ENTITY_KIND_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    TACTICS_FIELD_NUMBER: _ClassVar[int]
    TECHNIQUES_FIELD_NUMBER: _ClassVar[int]
    ALERT_IDS_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_IDS_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_COUNT_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_AT_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_BY_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_BY_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IPS_FIELD_NUMBER: _ClassVar[int]
    incident_id: str
    seq: int
    entity_kind: EntityKind
    entity_id: str
    title: str
    severity: _anomalies_pb2.Severity
    score: float
    status: IncidentStatus
    signals: _containers.RepeatedCompositeFieldContainer[IncidentSignal]
    tactics: _containers.RepeatedCompositeFieldContainer[_anomalies_pb2.AttackTactic]
    techniques: _containers.RepeatedCompositeFieldContainer[_anomalies_pb2.AttackTechnique]
    alert_ids: _containers.RepeatedScalarFieldContainer[str]
    anomaly_ids: _containers.RepeatedScalarFieldContainer[str]
    anomaly_count: int
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    session_ids: _containers.RepeatedScalarFieldContainer[str]
    first_seen_at: _timestamp_pb2.Timestamp
    last_seen_at: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    acknowledged_at: _timestamp_pb2.Timestamp
    acknowledged_by: str
    resolved_at: _timestamp_pb2.Timestamp
    resolved_by: str
    resolution: _alerts_pb2.Resolution
    note: str
    source_ips: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, incident_id: _Optional[str] = ..., seq: _Optional[int] = ..., entity_kind: _Optional[_Union[EntityKind, str]] = ..., entity_id: _Optional[str] = ..., title: _Optional[str] = ..., severity: _Optional[_Union[_anomalies_pb2.Severity, str]] = ..., score: _Optional[float] = ..., status: _Optional[_Union[IncidentStatus, str]] = ..., signals: _Optional[_Iterable[_Union[IncidentSignal, _Mapping]]] = ..., tactics: _Optional[_Iterable[_Union[_anomalies_pb2.AttackTactic, _Mapping]]] = ..., techniques: _Optional[_Iterable[_Union[_anomalies_pb2.AttackTechnique, _Mapping]]] = ..., alert_ids: _Optional[_Iterable[str]] = ..., anomaly_ids: _Optional[_Iterable[str]] = ..., anomaly_count: _Optional[int] = ..., user_ids: _Optional[_Iterable[str]] = ..., session_ids: _Optional[_Iterable[str]] = ..., first_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., acknowledged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., acknowledged_by: _Optional[str] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_by: _Optional[str] = ..., resolution: _Optional[_Union[_alerts_pb2.Resolution, str]] = ..., note: _Optional[str] = ..., source_ips: _Optional[_Iterable[str]] = ...) -> None: ...

class TimelineEntry(_message.Message):
    __slots__ = ("occurred_at", "anomaly", "event")
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    occurred_at: _timestamp_pb2.Timestamp
    anomaly: _anomalies_pb2.Anomaly
    event: _events_pb2.ActivityEvent
    def __init__(self, occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., anomaly: _Optional[_Union[_anomalies_pb2.Anomaly, _Mapping]] = ..., event: _Optional[_Union[_events_pb2.ActivityEvent, _Mapping]] = ...) -> None: ...
