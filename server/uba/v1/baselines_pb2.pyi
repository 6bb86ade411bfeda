import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KnownValue(_message.Message):
    __slots__ = ("value", "count", "first_seen_at", "last_seen_at")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    value: str
    count: int
    first_seen_at: _timestamp_pb2.Timestamp
    last_seen_at: _timestamp_pb2.Timestamp
    def __init__(self, value: _Optional[str] = ..., count: _Optional[int] = ..., first_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RunningStats(_message.Message):
    __slots__ = ("count", "mean", "stddev", "min", "max")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STDDEV_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    count: int
    mean: float
    stddev: float
    min: float
    max: float
    def __init__(self, count: _Optional[int] = ..., mean: _Optional[float] = ..., stddev: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ...) -> None: ...

class EndpointUsage(_message.Message):
    __slots__ = ("endpoint", "count", "first_seen_at", "last_seen_at")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    count: int
    first_seen_at: _timestamp_pb2.Timestamp
    last_seen_at: _timestamp_pb2.Timestamp
    def __init__(self, endpoint: _Optional[str] = ..., count: _Optional[int] = ..., first_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LastLogin(_message.Message):
    __slots__ = ("occurred_at", "source_ip", "country_code", "city", "latitude", "longitude")
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IP_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_CODE_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    occurred_at: _timestamp_pb2.Timestamp
    source_ip: str
    country_code: str
    city: str
    latitude: float
    longitude: float
    def __init__(self, occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source_ip: _Optional[str] = ..., country_code: _Optional[str] = ..., city: _Optional[str] = ..., latitude: _Optional[float] = ..., longitude: _Optional[float] = ...) -> None: ...

class UserBaseline(_message.Message):
    __slots__ = ("user_id", "timezone", "peer_group", "observation_count", "days_covered", "mature", "first_seen_at", "last_seen_at", "login_hour_of_week", "logins_per_day", "failed_logins_per_hour", "log_session_seconds", "api_calls_per_hour", "bytes_per_hour", "api_error_share", "endpoints", "countries", "cities", "source_ips", "devices", "last_login")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    PEER_GROUP_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    DAYS_COVERED_FIELD_NUMBER: _ClassVar[int]
    MATURE_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    LOGIN_HOUR_OF_WEEK_FIELD_NUMBER: _ClassVar[int]
    LOGINS_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    FAILED_LOGINS_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    LOG_SESSION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    API_CALLS_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    BYTES_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    API_ERROR_SHARE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    COUNTRIES_FIELD_NUMBER: _ClassVar[int]
    CITIES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IPS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    LAST_LOGIN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    timezone: str
    peer_group: str
    observation_count: int
    days_covered: int
    mature: bool
    first_seen_at: _timestamp_pb2.Timestamp
    last_seen_at: _timestamp_pb2.Timestamp
    login_hour_of_week: _containers.RepeatedScalarFieldContainer[int]
    logins_per_day: RunningStats
    failed_logins_per_hour: RunningStats
    log_session_seconds: RunningStats
    api_calls_per_hour: RunningStats
    bytes_per_hour: RunningStats
    api_error_share: float
    endpoints: _containers.RepeatedCompositeFieldContainer[EndpointUsage]
    countries: _containers.RepeatedCompositeFieldContainer[KnownValue]
    cities: _containers.RepeatedCompositeFieldContainer[KnownValue]
    source_ips: _containers.RepeatedCompositeFieldContainer[KnownValue]
    devices: _containers.RepeatedCompositeFieldContainer[KnownValue]
    last_login: LastLogin
    def __init__(self, user_id: _Optional[str] = ..., timezone: _Optional[str] = ..., peer_group: _Optional[str] = ..., observation_count: _Optional[int] = ..., days_covered: _Optional[int] = ..., mature: _Optional[bool] = ..., first_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., login_hour_of_week: _Optional[_Iterable[int]] = ..., logins_per_day: _Optional[_Union[RunningStats, _Mapping]] = ..., failed_logins_per_hour: _Optional[_Union[RunningStats, _Mapping]] = ..., log_session_seconds: _Optional[_Union[RunningStats, _Mapping]] = ..., api_calls_per_hour: _Optional[_Union[RunningStats, _Mapping]] = ..., bytes_per_hour: _Optional[_Union[RunningStats, _Mapping]] = ..., api_error_share: _Optional[float] = ..., endpoints: _Optional[_Iterable[_Union[EndpointUsage, _Mapping]]] = ..., countries: _Optional[_Iterable[_Union[KnownValue, _Mapping]]] = ..., cities: _Optional[_Iterable[_Union[KnownValue, _Mapping]]] = ..., source_ips: _Optional[_Iterable[_Union[KnownValue, _Mapping]]] = ..., devices: _Optional[_Iterable[_Union[KnownValue, _Mapping]]] = ..., last_login: _Optional[_Union[LastLogin, _Mapping]] = ...) -> None: ...
