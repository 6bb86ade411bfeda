import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ActivityType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTIVITY_TYPE_UNSPECIFIED: _ClassVar[ActivityType]
    ACTIVITY_TYPE_LOGIN_SUCCESS: _ClassVar[ActivityType]
    ACTIVITY_TYPE_LOGIN_FAILURE: _ClassVar[ActivityType]
    ACTIVITY_TYPE_LOGOUT: _ClassVar[ActivityType]
    ACTIVITY_TYPE_API_CALL: _ClassVar[ActivityType]
    ACTIVITY_TYPE_SESSION_START: _ClassVar[ActivityType]
    ACTIVITY_TYPE_PASSWORD_CHANGE: _ClassVar[ActivityType]
    ACTIVITY_TYPE_PERMISSION_CHANGE: _ClassVar[ActivityType]
    ACTIVITY_TYPE_MFA_CHALLENGE: _ClassVar[ActivityType]
    ACTIVITY_TYPE_MFA_APPROVED: _ClassVar[ActivityType]
    ACTIVITY_TYPE_MFA_DENIED: _ClassVar[ActivityType]
ACTIVITY_TYPE_UNSPECIFIED: ActivityType
ACTIVITY_TYPE_LOGIN_SUCCESS: ActivityType
ACTIVITY_TYPE_LOGIN_FAILURE: ActivityType
ACTIVITY_TYPE_LOGOUT: ActivityType
ACTIVITY_TYPE_API_CALL: ActivityType
ACTIVITY_TYPE_SESSION_START: ActivityType
ACTIVITY_TYPE_PASSWORD_CHANGE: ActivityType
ACTIVITY_TYPE_PERMISSION_CHANGE: ActivityType
ACTIVITY_TYPE_MFA_CHALLENGE: ActivityType
ACTIVITY_TYPE_MFA_APPROVED: ActivityType
ACTIVITY_TYPE_MFA_DENIED: ActivityType

class ActivityEvent(_message.Message):
    __slots__ = ("event_id", "user_id", "type", "occurred_at", "source_ip", "user_agent", "device_id", "session_id", "country_code", "city", "latitude", "longitude", "timezone", "peer_group", "api_method", "api_path", "status_code", "bytes_transferred", "session_duration", "attributes", "source", "received_at")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IP_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_CODE_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    PEER_GROUP_FIELD_NUMBER: _ClassVar[int]
    API_METHOD_FIELD_NUMBER: _ClassVar[int]
    API_PATH_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TRANSFERRED_FIELD_NUMBER: _ClassVar[int]
    SESSION_DURATION_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    user_id: str
    type: ActivityType
    occurred_at: _timestamp_pb2.Timestamp
    source_ip: str
    user_agent: str
    device_id: str
    session_id: str
    country_code: str
    city: str
    latitude: float
    longitude: float
    timezone: str
    peer_group: str
    api_method: str
    api_path: str
    status_code: int
    bytes_transferred: int
    session_duration: _duration_pb2.Duration
    attributes: _containers.ScalarMap[str, str]
    source: str
    received_at: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., user_id: _Optional[str] = ..., type: _Optional[_Union[ActivityType, str]] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source_ip: _Optional[str] = ..., user_agent: _Optional[str] = ..., device_id: _Optional[str] = ..., session_id: _Optional[str] = ..., country_code: _Optional[str] = ..., city: _Optional[str] = ..., latitude: _Optional[float] = ..., longitude: _Optional[float] = ..., timezone: _Optional[str] = ..., peer_group: _Optional[str] = ..., api_method: _Optional[str] = ..., api_path: _Optional[str] = ..., status_code: _Optional[int] = ..., bytes_transferred: _Optional[int] = ..., session_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., attributes: _Optional[_Mapping[str, str]] = ..., source: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
