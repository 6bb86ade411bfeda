import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_LOW: _ClassVar[Severity]
    SEVERITY_MEDIUM: _ClassVar[Severity]
    SEVERITY_HIGH: _ClassVar[Severity]
    SEVERITY_CRITICAL: _ClassVar[Severity]
SEVERITY_UNSPECIFIED: Severity
SEVERITY_LOW: Severity
SEVERITY_MEDIUM: Severity
SEVERITY_HIGH: Severity
SEVERITY_CRITICAL: Severity

class Feature(_message.Message):
    __slots__ = ("name", "value", "contribution")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    contribution: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., contribution: _Optional[float] = ...) -> None: ...

class Anomaly(_message.Message):
    __slots__ = ("anomaly_id", "user_id", "detector", "detector_version", "score", "severity", "event_ids", "reason", "observed", "expected", "baseline_observations", "baseline_mature", "features", "occurred_at", "detected_at", "alert_id", "quarantined", "tactics", "techniques")
    ANOMALY_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    BASELINE_OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_MATURE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    DETECTED_AT_FIELD_NUMBER: _ClassVar[int]
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_FIELD_NUMBER: _ClassVar[int]
    TACTICS_FIELD_NUMBER: _ClassVar[int]
    TECHNIQUES_FIELD_NUMBER: _ClassVar[int]
    anomaly_id: str
    user_id: str
    detector: str
    detector_version: str
    score: float
    severity: Severity
    event_ids: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    observed: str
    expected: str
    baseline_observations: int
    baseline_mature: bool
    features: _containers.RepeatedCompositeFieldContainer[Feature]
    occurred_at: _timestamp_pb2.Timestamp
    detected_at: _timestamp_pb2.Timestamp
    alert_id: str
    quarantined: bool
    tactics: _containers.RepeatedCompositeFieldContainer[AttackTactic]
    techniques: _containers.RepeatedCompositeFieldContainer[AttackTechnique]
    def __init__(self, anomaly_id: _Optional[str] = ..., user_id: _Optional[str] = ..., detector: _Optional[str] = ..., detector_version: _Optional[str] = ..., score: _Optional[float] = ..., severity: _Optional[_Union[Severity, str]] = ..., event_ids: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ..., observed: _Optional[str] = ..., expected: _Optional[str] = ..., baseline_observations: _Optional[int] = ..., baseline_mature: _Optional[bool] = ..., features: _Optional[_Iterable[_Union[Feature, _Mapping]]] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., detected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., alert_id: _Optional[str] = ..., quarantined: _Optional[bool] = ..., tactics: _Optional[_Iterable[_Union[AttackTactic, _Mapping]]] = ..., techniques: _Optional[_Iterable[_Union[AttackTechnique, _Mapping]]] = ...) -> None: ...

class AttackTactic(_message.Message):
    __slots__ = ("tactic_id", "name")
    TACTIC_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    tactic_id: str
    name: str
    def __init__(self, tactic_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class AttackTechnique(_message.Message):
    __slots__ = ("technique_id", "name")
    TECHNIQUE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    technique_id: str
    name: str
    def __init__(self, technique_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...
