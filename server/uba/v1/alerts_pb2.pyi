import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from uba.v1 import anomalies_pb2 as _anomalies_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AlertStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_STATUS_UNSPECIFIED: _ClassVar[AlertStatus]
    ALERT_STATUS_OPEN: _ClassVar[AlertStatus]
    ALERT_STATUS_ACKNOWLEDGED: _ClassVar[AlertStatus]
    ALERT_STATUS_RESOLVED: _ClassVar[AlertStatus]

class Resolution(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOLUTION_UNSPECIFIED: _ClassVar[Resolution]
    RESOLUTION_TRUE_POSITIVE: _ClassVar[Resolution]
    RESOLUTION_BENIGN: _ClassVar[Resolution]
    RESOLUTION_FALSE_POSITIVE: _ClassVar[Resolution]
ALERT_STATUS_UNSPECIFIED: AlertStatus
ALERT_STATUS_OPEN: AlertStatus
ALERT_STATUS_ACKNOWLEDGED: AlertStatus
ALERT_STATUS_RESOLVED: AlertStatus
RESOLUTION_UNSPECIFIED: Resolution
RESOLUTION_TRUE_POSITIVE: Resolution
RESOLUTION_BENIGN: Resolution
RESOLUTION_FALSE_POSITIVE: Resolution

class Alert(_message.Message):
    __slots__ = ("alert_id", "seq", "user_id", "detector", "severity", "status", "title", "reason", "anomaly_ids", "anomaly_count", "user_risk", "first_seen_at", "last_seen_at", "created_at", "updated_at", "acknowledged_at", "acknowledged_by", "resolved_at", "resolved_by", "resolution", "note", "tactics", "techniques", "incident_id")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_IDS_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_COUNT_FIELD_NUMBER: _ClassVar[int]
    USER_RISK_FIELD_NUMBER: _ClassVar[int]
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
    TACTICS_FIELD_NUMBER: _ClassVar[int]
    TECHNIQUES_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    seq: int
    user_id: str
    detector: str
    severity: _anomalies_pb2.Severity
    status: AlertStatus
    title: str
    reason: str
    anomaly_ids: _containers.RepeatedScalarFieldContainer[str]
    anomaly_count: int
    user_risk: int
    first_seen_at: _timestamp_pb2.Timestamp
    last_seen_at: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    acknowledged_at: _timestamp_pb2.Timestamp
    acknowledged_by: str
    resolved_at: _timestamp_pb2.Timestamp
    resolved_by: str
    resolution: Resolution
    note: str
    tactics: _containers.RepeatedCompositeFieldContainer[_anomalies_pb2.AttackTactic]
    techniques: _containers.RepeatedCompositeFieldContainer[_anomalies_pb2.AttackTechnique]
    incident_id: str
    def __init__(self, alert_id: _Optional[str] = ..., seq: _Optional[int] = ..., user_id: _Optional[str] = ..., detector: _Optional[str] = ..., severity: _Optional[_Union[_anomalies_pb2.Severity, str]] = ..., status: _Optional[_Union[AlertStatus, str]] = ..., title: _Optional[str] = ..., reason: _Optional[str] = ..., anomaly_ids: _Optional[_Iterable[str]] = ..., anomaly_count: _Optional[int] = ..., user_risk: _Optional[int] = ..., first_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., acknowledged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., acknowledged_by: _Optional[str] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_by: _Optional[str] = ..., resolution: _Optional[_Union[Resolution, str]] = ..., note: _Optional[str] = ..., tactics: _Optional[_Iterable[_Union[_anomalies_pb2.AttackTactic, _Mapping]]] = ..., techniques: _Optional[_Iterable[_Union[_anomalies_pb2.AttackTechnique, _Mapping]]] = ..., incident_id: _Optional[str] = ...) -> None: ...
