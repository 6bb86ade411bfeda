import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from uba.v1 import alerts_pb2 as _alerts_pb2
from uba.v1 import anomalies_pb2 as _anomalies_pb2
from uba.v1 import baselines_pb2 as _baselines_pb2
from uba.v1 import events_pb2 as _events_pb2
from uba.v1 import incidents_pb2 as _incidents_pb2
from uba.v1 import notifications_pb2 as _notifications_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecordStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECORD_STATUS_UNSPECIFIED: _ClassVar[RecordStatus]
    RECORD_STATUS_ACCEPTED: _ClassVar[RecordStatus]
    RECORD_STATUS_DUPLICATE: _ClassVar[RecordStatus]
    RECORD_STATUS_INVALID: _ClassVar[RecordStatus]

class AnalyticsMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANALYTICS_MODE_UNSPECIFIED: _ClassVar[AnalyticsMode]
    ANALYTICS_MODE_BASIC: _ClassVar[AnalyticsMode]
    ANALYTICS_MODE_ENHANCED: _ClassVar[AnalyticsMode]
RECORD_STATUS_UNSPECIFIED: RecordStatus
RECORD_STATUS_ACCEPTED: RecordStatus
RECORD_STATUS_DUPLICATE: RecordStatus
RECORD_STATUS_INVALID: RecordStatus
ANALYTICS_MODE_UNSPECIFIED: AnalyticsMode
ANALYTICS_MODE_BASIC: AnalyticsMode
ANALYTICS_MODE_ENHANCED: AnalyticsMode

class RecordActivityRequest(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.ActivityEvent
    def __init__(self, event: _Optional[_Union[_events_pb2.ActivityEvent, _Mapping]] = ...) -> None: ...

class RecordActivityResponse(_message.Message):
    __slots__ = ("event_id", "duplicate", "received_at")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    duplicate: bool
    received_at: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., duplicate: _Optional[bool] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecordActivitiesRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_events_pb2.ActivityEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[_events_pb2.ActivityEvent, _Mapping]]] = ...) -> None: ...

class FieldViolation(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class RecordResult(_message.Message):
    __slots__ = ("index", "event_id", "status", "violations")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    index: int
    event_id: str
    status: RecordStatus
    violations: _containers.RepeatedCompositeFieldContainer[FieldViolation]
    def __init__(self, index: _Optional[int] = ..., event_id: _Optional[str] = ..., status: _Optional[_Union[RecordStatus, str]] = ..., violations: _Optional[_Iterable[_Union[FieldViolation, _Mapping]]] = ...) -> None: ...

class RecordActivitiesResponse(_message.Message):
    __slots__ = ("results", "accepted_count", "duplicate_count", "invalid_count")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_COUNT_FIELD_NUMBER: _ClassVar[int]
    INVALID_COUNT_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RecordResult]
    accepted_count: int
    duplicate_count: int
    invalid_count: int
    def __init__(self, results: _Optional[_Iterable[_Union[RecordResult, _Mapping]]] = ..., accepted_count: _Optional[int] = ..., duplicate_count: _Optional[int] = ..., invalid_count: _Optional[int] = ...) -> None: ...

class ListLogsRequest(_message.Message):
    __slots__ = ("user_id", "type", "start_time", "end_time", "source_ip", "page_size", "page_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IP_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    type: _events_pb2.ActivityType
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    source_ip: str
    page_size: int
    page_token: str
    def __init__(self, user_id: _Optional[str] = ..., type: _Optional[_Union[_events_pb2.ActivityType, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source_ip: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListLogsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_events_pb2.ActivityEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[_events_pb2.ActivityEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ExportLogsRequest(_message.Message):
    __slots__ = ("user_id", "type", "start_time", "end_time", "source_ip", "format")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IP_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    type: _events_pb2.ActivityType
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    source_ip: str
    format: str
    def __init__(self, user_id: _Optional[str] = ..., type: _Optional[_Union[_events_pb2.ActivityType, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source_ip: _Optional[str] = ..., format: _Optional[str] = ...) -> None: ...

class GetDashboardRequest(_message.Message):
    __slots__ = ("window",)
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    window: _duration_pb2.Duration
    def __init__(self, window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class DashboardTotals(_message.Message):
    __slots__ = ("event_count", "user_count", "login_success_count", "login_failure_count", "logout_count", "api_call_count", "anomaly_count", "open_alert_count")
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    USER_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOGIN_SUCCESS_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOGIN_FAILURE_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOGOUT_COUNT_FIELD_NUMBER: _ClassVar[int]
    API_CALL_COUNT_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_COUNT_FIELD_NUMBER: _ClassVar[int]
    OPEN_ALERT_COUNT_FIELD_NUMBER: _ClassVar[int]
    event_count: int
    user_count: int
    login_success_count: int
    login_failure_count: int
    logout_count: int
    api_call_count: int
    anomaly_count: int
    open_alert_count: int
    def __init__(self, event_count: _Optional[int] = ..., user_count: _Optional[int] = ..., login_success_count: _Optional[int] = ..., login_failure_count: _Optional[int] = ..., logout_count: _Optional[int] = ..., api_call_count: _Optional[int] = ..., anomaly_count: _Optional[int] = ..., open_alert_count: _Optional[int] = ...) -> None: ...

class HourlyBucket(_message.Message):
    __slots__ = ("start_time", "event_count", "login_failure_count", "anomaly_count")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOGIN_FAILURE_COUNT_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_COUNT_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    event_count: int
    login_failure_count: int
    anomaly_count: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_count: _Optional[int] = ..., login_failure_count: _Optional[int] = ..., anomaly_count: _Optional[int] = ...) -> None: ...

class SeverityCount(_message.Message):
    __slots__ = ("severity", "count")
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    severity: _anomalies_pb2.Severity
    count: int
    def __init__(self, severity: _Optional[_Union[_anomalies_pb2.Severity, str]] = ..., count: _Optional[int] = ...) -> None: ...

class DetectorCount(_message.Message):
    __slots__ = ("detector", "count")
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    detector: str
    count: int
    def __init__(self, detector: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class UserRisk(_message.Message):
    __slots__ = ("user_id", "risk", "top_reasons")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    RISK_FIELD_NUMBER: _ClassVar[int]
    TOP_REASONS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    risk: int
    top_reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_id: _Optional[str] = ..., risk: _Optional[int] = ..., top_reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class GetDashboardResponse(_message.Message):
    __slots__ = ("window_start", "window_end", "totals", "hourly", "open_alerts_by_severity", "anomalies_by_detector", "top_risky_users", "analytics_mode")
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    HOURLY_FIELD_NUMBER: _ClassVar[int]
    OPEN_ALERTS_BY_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    ANOMALIES_BY_DETECTOR_FIELD_NUMBER: _ClassVar[int]
    TOP_RISKY_USERS_FIELD_NUMBER: _ClassVar[int]
    ANALYTICS_MODE_FIELD_NUMBER: _ClassVar[int]
    window_start: _timestamp_pb2.Timestamp
    window_end: _timestamp_pb2.Timestamp
    totals: DashboardTotals
    hourly: _containers.RepeatedCompositeFieldContainer[HourlyBucket]
    open_alerts_by_severity: _containers.RepeatedCompositeFieldContainer[SeverityCount]
    anomalies_by_detector: _containers.RepeatedCompositeFieldContainer[DetectorCount]
    top_risky_users: _containers.RepeatedCompositeFieldContainer[UserRisk]
    analytics_mode: AnalyticsMode
    def __init__(self, window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., totals: _Optional[_Union[DashboardTotals, _Mapping]] = ..., hourly: _Optional[_Iterable[_Union[HourlyBucket, _Mapping]]] = ..., open_alerts_by_severity: _Optional[_Iterable[_Union[SeverityCount, _Mapping]]] = ..., anomalies_by_detector: _Optional[_Iterable[_Union[DetectorCount, _Mapping]]] = ..., top_risky_users: _Optional[_Iterable[_Union[UserRisk, _Mapping]]] = ..., analytics_mode: _Optional[_Union[AnalyticsMode, str]] = ...) -> None: ...

class ListAnomaliesRequest(_message.Message):
    __slots__ = ("user_id", "detector", "min_severity", "start_time", "end_time", "page_size", "page_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    MIN_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    detector: str
    min_severity: _anomalies_pb2.Severity
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, user_id: _Optional[str] = ..., detector: _Optional[str] = ..., min_severity: _Optional[_Union[_anomalies_pb2.Severity, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAnomaliesResponse(_message.Message):
    __slots__ = ("anomalies", "next_page_token")
    ANOMALIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    anomalies: _containers.RepeatedCompositeFieldContainer[_anomalies_pb2.Anomaly]
    next_page_token: str
    def __init__(self, anomalies: _Optional[_Iterable[_Union[_anomalies_pb2.Anomaly, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("user_id", "detector", "min_severity", "status", "page_size", "page_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    MIN_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    detector: str
    min_severity: _anomalies_pb2.Severity
    status: _alerts_pb2.AlertStatus
    page_size: int
    page_token: str
    def __init__(self, user_id: _Optional[str] = ..., detector: _Optional[str] = ..., min_severity: _Optional[_Union[_anomalies_pb2.Severity, str]] = ..., status: _Optional[_Union[_alerts_pb2.AlertStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts", "next_page_token")
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[_alerts_pb2.Alert]
    next_page_token: str
    def __init__(self, alerts: _Optional[_Iterable[_Union[_alerts_pb2.Alert, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StreamAlertsRequest(_message.Message):
    __slots__ = ("after_seq", "min_severity", "user_id", "detector", "include_incidents")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    MIN_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_INCIDENTS_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    min_severity: _anomalies_pb2.Severity
    user_id: str
    detector: str
    include_incidents: bool
    def __init__(self, after_seq: _Optional[int] = ..., min_severity: _Optional[_Union[_anomalies_pb2.Severity, str]] = ..., user_id: _Optional[str] = ..., detector: _Optional[str] = ..., include_incidents: _Optional[bool] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("sent_at",)
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    sent_at: _timestamp_pb2.Timestamp
    def __init__(self, sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StreamAlertsResponse(_message.Message):
    __slots__ = ("seq", "alert", "heartbeat", "incident")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ALERT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_FIELD_NUMBER: _ClassVar[int]
    seq: int
    alert: _alerts_pb2.Alert
    heartbeat: Heartbeat
    incident: _incidents_pb2.Incident
    def __init__(self, seq: _Optional[int] = ..., alert: _Optional[_Union[_alerts_pb2.Alert, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., incident: _Optional[_Union[_incidents_pb2.Incident, _Mapping]] = ...) -> None: ...

class AcknowledgeAlertRequest(_message.Message):
    __slots__ = ("alert_id", "note")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    note: str
    def __init__(self, alert_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class AcknowledgeAlertResponse(_message.Message):
    __slots__ = ("alert",)
    ALERT_FIELD_NUMBER: _ClassVar[int]
    alert: _alerts_pb2.Alert
    def __init__(self, alert: _Optional[_Union[_alerts_pb2.Alert, _Mapping]] = ...) -> None: ...

class ResolveAlertRequest(_message.Message):
    __slots__ = ("alert_id", "resolution", "note", "suppress_for")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    SUPPRESS_FOR_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    resolution: _alerts_pb2.Resolution
    note: str
    suppress_for: _duration_pb2.Duration
    def __init__(self, alert_id: _Optional[str] = ..., resolution: _Optional[_Union[_alerts_pb2.Resolution, str]] = ..., note: _Optional[str] = ..., suppress_for: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ResolveAlertResponse(_message.Message):
    __slots__ = ("alert",)
    ALERT_FIELD_NUMBER: _ClassVar[int]
    alert: _alerts_pb2.Alert
    def __init__(self, alert: _Optional[_Union[_alerts_pb2.Alert, _Mapping]] = ...) -> None: ...

class GetUserBaselineRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class GetUserBaselineResponse(_message.Message):
    __slots__ = ("baseline",)
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    baseline: _baselines_pb2.UserBaseline
    def __init__(self, baseline: _Optional[_Union[_baselines_pb2.UserBaseline, _Mapping]] = ...) -> None: ...

class BackfillRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "raise_alerts")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    RAISE_ALERTS_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    raise_alerts: bool
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., raise_alerts: _Optional[bool] = ...) -> None: ...

class BackfillResponse(_message.Message):
    __slots__ = ("event_count", "user_count", "anomaly_count", "alert_count")
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    USER_COUNT_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_COUNT_FIELD_NUMBER: _ClassVar[int]
    ALERT_COUNT_FIELD_NUMBER: _ClassVar[int]
    event_count: int
    user_count: int
    anomaly_count: int
    alert_count: int
    def __init__(self, event_count: _Optional[int] = ..., user_count: _Optional[int] = ..., anomaly_count: _Optional[int] = ..., alert_count: _Optional[int] = ...) -> None: ...

class TrainModelRequest(_message.Message):
    __slots__ = ("start_time", "end_time")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TrainModelResponse(_message.Message):
    __slots__ = ("version", "event_count", "row_count", "features", "threshold", "training_seconds")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TRAINING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    version: str
    event_count: int
    row_count: int
    features: _containers.RepeatedScalarFieldContainer[str]
    threshold: float
    training_seconds: float
    def __init__(self, version: _Optional[str] = ..., event_count: _Optional[int] = ..., row_count: _Optional[int] = ..., features: _Optional[_Iterable[str]] = ..., threshold: _Optional[float] = ..., training_seconds: _Optional[float] = ...) -> None: ...

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DetectorInfo(_message.Message):
    __slots__ = ("name", "version", "family", "description", "available", "enabled", "unavailable_reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    family: str
    description: str
    available: bool
    enabled: bool
    unavailable_reason: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., family: _Optional[str] = ..., description: _Optional[str] = ..., available: _Optional[bool] = ..., enabled: _Optional[bool] = ..., unavailable_reason: _Optional[str] = ...) -> None: ...

class GetCapabilitiesResponse(_message.Message):
    __slots__ = ("version", "storage_backend", "analytics_mode", "detectors", "max_batch_size", "export_formats", "event_log")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STORAGE_BACKEND_FIELD_NUMBER: _ClassVar[int]
    ANALYTICS_MODE_FIELD_NUMBER: _ClassVar[int]
    DETECTORS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FORMATS_FIELD_NUMBER: _ClassVar[int]
    EVENT_LOG_FIELD_NUMBER: _ClassVar[int]
    version: str
    storage_backend: str
    analytics_mode: AnalyticsMode
    detectors: _containers.RepeatedCompositeFieldContainer[DetectorInfo]
    max_batch_size: int
    export_formats: _containers.RepeatedScalarFieldContainer[str]
    event_log: EventLogStatus
    def __init__(self, version: _Optional[str] = ..., storage_backend: _Optional[str] = ..., analytics_mode: _Optional[_Union[AnalyticsMode, str]] = ..., detectors: _Optional[_Iterable[_Union[DetectorInfo, _Mapping]]] = ..., max_batch_size: _Optional[int] = ..., export_formats: _Optional[_Iterable[str]] = ..., event_log: _Optional[_Union[EventLogStatus, _Mapping]] = ...) -> None: ...

class EventLogStatus(_message.Message):
    __slots__ = ("partitions", "lag_events", "partition_lags", "live_workers", "oldest_lag_age", "observed_at", "unavailable_reason")
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    LAG_EVENTS_FIELD_NUMBER: _ClassVar[int]
    PARTITION_LAGS_FIELD_NUMBER: _ClassVar[int]
    LIVE_WORKERS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_LAG_AGE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_AT_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    partitions: int
    lag_events: int
    partition_lags: _containers.RepeatedCompositeFieldContainer[PartitionLag]
    live_workers: int
    oldest_lag_age: _duration_pb2.Duration
    observed_at: _timestamp_pb2.Timestamp
    unavailable_reason: str
    def __init__(self, partitions: _Optional[int] = ..., lag_events: _Optional[int] = ..., partition_lags: _Optional[_Iterable[_Union[PartitionLag, _Mapping]]] = ..., live_workers: _Optional[int] = ..., oldest_lag_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., observed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., unavailable_reason: _Optional[str] = ...) -> None: ...

class PartitionLag(_message.Message):
    __slots__ = ("partition", "lag_events")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    LAG_EVENTS_FIELD_NUMBER: _ClassVar[int]
    partition: int
    lag_events: int
    def __init__(self, partition: _Optional[int] = ..., lag_events: _Optional[int] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("actor", "action", "page_size", "page_token")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    actor: str
    action: str
    page_size: int
    page_token: str
    def __init__(self, actor: _Optional[str] = ..., action: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("seq", "occurred_at", "actor", "key_id", "action", "target", "peer", "outcome", "detail")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    seq: int
    occurred_at: _timestamp_pb2.Timestamp
    actor: str
    key_id: str
    action: str
    target: str
    peer: str
    outcome: str
    detail: str
    def __init__(self, seq: _Optional[int] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., key_id: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., peer: _Optional[str] = ..., outcome: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ("audit_events", "next_page_token")
    AUDIT_EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    audit_events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    next_page_token: str
    def __init__(self, audit_events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListIncidentsRequest(_message.Message):
    __slots__ = ("user_id", "status", "min_severity", "tactic", "start_time", "end_time", "page_size", "page_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MIN_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    TACTIC_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    status: _incidents_pb2.IncidentStatus
    min_severity: _anomalies_pb2.Severity
    tactic: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, user_id: _Optional[str] = ..., status: _Optional[_Union[_incidents_pb2.IncidentStatus, str]] = ..., min_severity: _Optional[_Union[_anomalies_pb2.Severity, str]] = ..., tactic: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListIncidentsResponse(_message.Message):
    __slots__ = ("incidents", "next_page_token")
    INCIDENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    incidents: _containers.RepeatedCompositeFieldContainer[_incidents_pb2.Incident]
    next_page_token: str
    def __init__(self, incidents: _Optional[_Iterable[_Union[_incidents_pb2.Incident, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetIncidentRequest(_message.Message):
    __slots__ = ("incident_id",)
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    incident_id: str
    def __init__(self, incident_id: _Optional[str] = ...) -> None: ...

class GetIncidentResponse(_message.Message):
    __slots__ = ("incident", "alerts", "timeline")
    INCIDENT_FIELD_NUMBER: _ClassVar[int]
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_FIELD_NUMBER: _ClassVar[int]
    incident: _incidents_pb2.Incident
    alerts: _containers.RepeatedCompositeFieldContainer[_alerts_pb2.Alert]
    timeline: _containers.RepeatedCompositeFieldContainer[_incidents_pb2.TimelineEntry]
    def __init__(self, incident: _Optional[_Union[_incidents_pb2.Incident, _Mapping]] = ..., alerts: _Optional[_Iterable[_Union[_alerts_pb2.Alert, _Mapping]]] = ..., timeline: _Optional[_Iterable[_Union[_incidents_pb2.TimelineEntry, _Mapping]]] = ...) -> None: ...

class AcknowledgeIncidentRequest(_message.Message):
    __slots__ = ("incident_id", "note")
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    incident_id: str
    note: str
    def __init__(self, incident_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class AcknowledgeIncidentResponse(_message.Message):
    __slots__ = ("incident",)
    INCIDENT_FIELD_NUMBER: _ClassVar[int]
    incident: _incidents_pb2.Incident
    def __init__(self, incident: _Optional[_Union[_incidents_pb2.Incident, _Mapping]] = ...) -> None: ...

class ResolveIncidentRequest(_message.Message):
    __slots__ = ("incident_id", "resolution", "note")
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    incident_id: str
    resolution: _alerts_pb2.Resolution
    note: str
    def __init__(self, incident_id: _Optional[str] = ..., resolution: _Optional[_Union[_alerts_pb2.Resolution, str]] = ..., note: _Optional[str] = ...) -> None: ...

class ResolveIncidentResponse(_message.Message):
    __slots__ = ("incident",)
    INCIDENT_FIELD_NUMBER: _ClassVar[int]
    incident: _incidents_pb2.Incident
    def __init__(self, incident: _Optional[_Union[_incidents_pb2.Incident, _Mapping]] = ...) -> None: ...

class ListNotificationsRequest(_message.Message):
    __slots__ = ("destination", "status", "page_size", "page_token")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    destination: str
    status: _notifications_pb2.NotificationStatus
    page_size: int
    page_token: str
    def __init__(self, destination: _Optional[str] = ..., status: _Optional[_Union[_notifications_pb2.NotificationStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListNotificationsResponse(_message.Message):
    __slots__ = ("notifications", "next_page_token", "destinations")
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DESTINATIONS_FIELD_NUMBER: _ClassVar[int]
    notifications: _containers.RepeatedCompositeFieldContainer[_notifications_pb2.Notification]
    next_page_token: str
    destinations: _containers.RepeatedCompositeFieldContainer[_notifications_pb2.NotificationDestination]
    def __init__(self, notifications: _Optional[_Iterable[_Union[_notifications_pb2.Notification, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., destinations: _Optional[_Iterable[_Union[_notifications_pb2.NotificationDestination, _Mapping]]] = ...) -> None: ...

class RetryNotificationsRequest(_message.Message):
    __slots__ = ("destination", "message_ids")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    destination: str
    message_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, destination: _Optional[str] = ..., message_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RetryNotificationsResponse(_message.Message):
    __slots__ = ("retried",)
    RETRIED_FIELD_NUMBER: _ClassVar[int]
    retried: int
    def __init__(self, retried: _Optional[int] = ...) -> None: ...

class SendTestNotificationRequest(_message.Message):
    __slots__ = ("destination", "text")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    destination: str
    text: str
    def __init__(self, destination: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class SendTestNotificationResponse(_message.Message):
    __slots__ = ("notification",)
    NOTIFICATION_FIELD_NUMBER: _ClassVar[int]
    notification: _notifications_pb2.Notification
    def __init__(self, notification: _Optional[_Union[_notifications_pb2.Notification, _Mapping]] = ...) -> None: ...

class ForgetUserRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class ForgetUserResponse(_message.Message):
    __slots__ = ("pseudonym", "events_deleted", "records_deleted", "records_pseudonymised")
    PSEUDONYM_FIELD_NUMBER: _ClassVar[int]
    EVENTS_DELETED_FIELD_NUMBER: _ClassVar[int]
    RECORDS_DELETED_FIELD_NUMBER: _ClassVar[int]
    RECORDS_PSEUDONYMISED_FIELD_NUMBER: _ClassVar[int]
    pseudonym: str
    events_deleted: int
    records_deleted: int
    records_pseudonymised: int
    def __init__(self, pseudonym: _Optional[str] = ..., events_deleted: _Optional[int] = ..., records_deleted: _Optional[int] = ..., records_pseudonymised: _Optional[int] = ...) -> None: ...
