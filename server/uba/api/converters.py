"""Message <-> domain conversion. The only module besides the servicer that
knows both protobuf and the domain types."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from uba.domain import attack
from uba.domain.alerts import Alert, AlertStatus, Resolution
from uba.domain.anomalies import Anomaly, Severity
from uba.domain.backlog import EventLogStatus
from uba.domain.dashboard import Dashboard
from uba.domain.errors import InvalidArgument
from uba.domain.events import ActivityEvent, ActivityType, EventFilter, RecordOutcome, RecordStatus
from uba.domain.incidents import (
    EntityKind,
    Incident,
    IncidentDetail,
    IncidentFilter,
    IncidentStatus,
    Signal,
)
from uba.domain.investigation import AlertFilter, AnomalyFilter
from uba.domain.notifications import DestinationInfo, Notification, NotificationStatus
from uba.domain.stats import KnownValues, RunningStats
from uba.domain.user_baseline import UserBaseline
from uba.v1 import (
    alerts_pb2,
    anomalies_pb2,
    baselines_pb2,
    events_pb2,
    incidents_pb2,
    notifications_pb2,
    service_pb2,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_TYPE_FROM_PB: dict[int, ActivityType] = {
    events_pb2.ACTIVITY_TYPE_LOGIN_SUCCESS: ActivityType.LOGIN_SUCCESS,
    events_pb2.ACTIVITY_TYPE_LOGIN_FAILURE: ActivityType.LOGIN_FAILURE,
    events_pb2.ACTIVITY_TYPE_LOGOUT: ActivityType.LOGOUT,
    events_pb2.ACTIVITY_TYPE_API_CALL: ActivityType.API_CALL,
    events_pb2.ACTIVITY_TYPE_SESSION_START: ActivityType.SESSION_START,
    events_pb2.ACTIVITY_TYPE_PASSWORD_CHANGE: ActivityType.PASSWORD_CHANGE,
    events_pb2.ACTIVITY_TYPE_PERMISSION_CHANGE: ActivityType.PERMISSION_CHANGE,
    events_pb2.ACTIVITY_TYPE_MFA_CHALLENGE: ActivityType.MFA_CHALLENGE,
    events_pb2.ACTIVITY_TYPE_MFA_APPROVED: ActivityType.MFA_APPROVED,
    events_pb2.ACTIVITY_TYPE_MFA_DENIED: ActivityType.MFA_DENIED,
}
_TYPE_TO_PB: dict[ActivityType, events_pb2.ActivityType] = {
    v: cast(events_pb2.ActivityType, k) for k, v in _TYPE_FROM_PB.items()
}
_STATUS_TO_PB = {
    RecordStatus.ACCEPTED: service_pb2.RECORD_STATUS_ACCEPTED,
    RecordStatus.DUPLICATE: service_pb2.RECORD_STATUS_DUPLICATE,
    RecordStatus.INVALID: service_pb2.RECORD_STATUS_INVALID,
}


# -- time -----------------------------------------------------------------

# What datetime/timedelta can hold. The wire allows any int64 seconds:
# values beyond these are clamped to the edge, which validation then refuses
# by field name (before 2000, in the future, too long) instead of crashing.
_MIN_TIME = datetime.min.replace(tzinfo=UTC)
_MAX_TIME = datetime.max.replace(tzinfo=UTC)


def to_datetime(ts: Timestamp) -> datetime:
    try:  # (days, seconds, microseconds) by position: cheaper, once per ingested event
        return EPOCH + timedelta(0, ts.seconds, ts.nanos // 1000)
    except OverflowError:
        return _MIN_TIME if ts.seconds < 0 else _MAX_TIME


def set_timestamp(target: Timestamp, moment: datetime) -> None:
    delta = moment - EPOCH
    target.seconds = delta.days * 86_400 + delta.seconds
    target.nanos = delta.microseconds * 1000


def to_timedelta(d: Duration) -> timedelta:
    try:
        return timedelta(seconds=d.seconds, microseconds=d.nanos // 1000)
    except OverflowError:  # see _MIN_TIME
        return timedelta.min if d.seconds < 0 else timedelta.max


def set_duration(target: Duration, span: timedelta) -> None:
    total_us = span // timedelta(microseconds=1)
    target.seconds, rest = divmod(total_us, 1_000_000)
    target.nanos = rest * 1000
    if target.seconds < 0 and target.nanos > 0:  # Duration wants both of one sign
        target.seconds += 1
        target.nanos -= 1_000_000_000


# -- events ---------------------------------------------------------------


def activity_type(value: int) -> ActivityType | None:
    """The domain type of an enum number; None for UNSPECIFIED or unknown."""
    return _TYPE_FROM_PB.get(value)


def event_from_pb(m: events_pb2.ActivityEvent) -> ActivityEvent:
    """Converts without judging: missing required fields come through as
    None so that validation can name them.

    Ingest's hot path: arguments by position, in ActivityEvent's field
    order (cheaper than keywords; docs/benchmarks.md has the figures), and
    an empty map is not copied (protobuf's map iterates in Python)."""
    has = m.HasField
    attributes = m.attributes
    return ActivityEvent(
        m.event_id,
        m.user_id,
        _TYPE_FROM_PB.get(m.type),  # type: ignore[arg-type]  # None: validation names it
        to_datetime(m.occurred_at)  # type: ignore[arg-type]  # None: validation names it
        if has("occurred_at")
        else None,
        m.source_ip,
        m.user_agent,
        m.device_id,
        m.session_id,
        m.country_code,
        m.city,
        m.latitude if has("latitude") else None,
        m.longitude if has("longitude") else None,
        m.timezone,
        m.peer_group,
        m.api_method,
        m.api_path,
        m.status_code,
        m.bytes_transferred,
        to_timedelta(m.session_duration) if has("session_duration") else None,
        {key: attributes[key] for key in attributes} if attributes else {},
        m.source,
    )


def event_to_pb(e: ActivityEvent, m: events_pb2.ActivityEvent) -> None:
    """Fills `m` (typically a repeated field's new element) from `e`."""
    m.event_id = e.event_id
    m.user_id = e.user_id
    m.type = _TYPE_TO_PB[e.type]
    set_timestamp(m.occurred_at, e.occurred_at)
    if e.received_at is not None:
        set_timestamp(m.received_at, e.received_at)
    m.source_ip = e.source_ip
    m.user_agent = e.user_agent
    m.device_id = e.device_id
    m.session_id = e.session_id
    m.country_code = e.country_code
    m.city = e.city
    if e.latitude is not None:
        m.latitude = e.latitude
    if e.longitude is not None:
        m.longitude = e.longitude
    m.timezone = e.timezone
    m.peer_group = e.peer_group
    m.api_method = e.api_method
    m.api_path = e.api_path
    m.status_code = e.status_code
    m.bytes_transferred = e.bytes_transferred
    if e.session_duration is not None:
        set_duration(m.session_duration, e.session_duration)
    m.attributes.update(e.attributes)
    m.source = e.source


def event_filter(request) -> EventFilter:  # ListLogsRequest or ExportLogsRequest
    """The filter fields shared by ListLogs and ExportLogs."""
    if request.type and request.type not in _TYPE_FROM_PB:
        raise InvalidArgument.single("type", f"unknown activity type {request.type}")
    return EventFilter(
        user_id=request.user_id,
        type=_TYPE_FROM_PB.get(request.type),
        start_time=to_datetime(request.start_time) if request.HasField("start_time") else None,
        end_time=to_datetime(request.end_time) if request.HasField("end_time") else None,
        source_ip=request.source_ip,
    )


# -- replies --------------------------------------------------------------


def record_activity_response(outcome: RecordOutcome) -> service_pb2.RecordActivityResponse:
    reply = service_pb2.RecordActivityResponse(
        event_id=outcome.event_id, duplicate=outcome.status is RecordStatus.DUPLICATE
    )
    if outcome.received_at is not None:
        set_timestamp(reply.received_at, outcome.received_at)
    return reply


def record_activities_response(
    outcomes: list[RecordOutcome],
) -> service_pb2.RecordActivitiesResponse:
    reply = service_pb2.RecordActivitiesResponse()
    counts = {RecordStatus.ACCEPTED: 0, RecordStatus.DUPLICATE: 0, RecordStatus.INVALID: 0}
    for index, outcome in enumerate(outcomes):
        counts[outcome.status] += 1
        result = reply.results.add(
            index=index, event_id=outcome.event_id, status=_STATUS_TO_PB[outcome.status]
        )
        for v in outcome.violations:
            result.violations.add(field=v.field, description=v.description)
    reply.accepted_count = counts[RecordStatus.ACCEPTED]
    reply.duplicate_count = counts[RecordStatus.DUPLICATE]
    reply.invalid_count = counts[RecordStatus.INVALID]
    return reply


def dashboard_response(d: Dashboard) -> service_pb2.GetDashboardResponse:
    reply = service_pb2.GetDashboardResponse(
        analytics_mode=(
            service_pb2.ANALYTICS_MODE_ENHANCED
            if d.analytics_mode == "enhanced"
            else service_pb2.ANALYTICS_MODE_BASIC
        ),
    )
    set_timestamp(reply.window_start, d.window_start)
    set_timestamp(reply.window_end, d.window_end)
    t = d.totals
    reply.totals.CopyFrom(
        service_pb2.DashboardTotals(
            event_count=t.event_count,
            user_count=t.user_count,
            login_success_count=t.login_success_count,
            login_failure_count=t.login_failure_count,
            logout_count=t.logout_count,
            api_call_count=t.api_call_count,
            anomaly_count=t.anomaly_count,
            open_alert_count=t.open_alert_count,
        )
    )
    for b in d.hourly:
        bucket = reply.hourly.add(
            event_count=b.event_count,
            login_failure_count=b.login_failure_count,
            anomaly_count=b.anomaly_count,
        )
        set_timestamp(bucket.start_time, b.start_time)
    for severity, count in d.open_alerts_by_severity.items():
        reply.open_alerts_by_severity.add(severity=severity, count=count)
    for detector, count in d.anomalies_by_detector.items():
        reply.anomalies_by_detector.add(detector=detector, count=count)
    for user_id, risk, reasons in d.top_risky_users:
        reply.top_risky_users.add(user_id=user_id, risk=risk, top_reasons=reasons)
    return reply


# -- detection ------------------------------------------------------------

_ALERT_STATUS_TO_PB = {
    AlertStatus.OPEN: alerts_pb2.ALERT_STATUS_OPEN,
    AlertStatus.ACKNOWLEDGED: alerts_pb2.ALERT_STATUS_ACKNOWLEDGED,
    AlertStatus.RESOLVED: alerts_pb2.ALERT_STATUS_RESOLVED,
}
_ALERT_STATUS_FROM_PB = {v: k for k, v in _ALERT_STATUS_TO_PB.items()}
_RESOLUTION_TO_PB = {
    Resolution.TRUE_POSITIVE: alerts_pb2.RESOLUTION_TRUE_POSITIVE,
    Resolution.BENIGN: alerts_pb2.RESOLUTION_BENIGN,
    Resolution.FALSE_POSITIVE: alerts_pb2.RESOLUTION_FALSE_POSITIVE,
}
_RESOLUTION_FROM_PB: dict[int, Resolution] = {v: k for k, v in _RESOLUTION_TO_PB.items()}


def severity_to_pb(severity: Severity) -> anomalies_pb2.Severity:
    """The wire's severity: the domain's enum has the same numbers."""
    return cast(anomalies_pb2.Severity, int(severity))


def min_severity(value: int) -> int:
    """A severity filter: 0 (unspecified) means any."""
    if value and value not in Severity._value2member_map_:
        raise InvalidArgument.single("min_severity", f"unknown severity {value}")
    return value


def resolution(value: int) -> Resolution | None:
    return _RESOLUTION_FROM_PB.get(value)


def anomaly_filter(request: service_pb2.ListAnomaliesRequest) -> AnomalyFilter:
    return AnomalyFilter(
        user_id=request.user_id,
        detector=request.detector,
        min_severity=min_severity(request.min_severity),
        start_time=to_datetime(request.start_time) if request.HasField("start_time") else None,
        end_time=to_datetime(request.end_time) if request.HasField("end_time") else None,
    )


def alert_filter(request: service_pb2.ListAlertsRequest) -> AlertFilter:
    if request.status and request.status not in _ALERT_STATUS_FROM_PB:
        raise InvalidArgument.single("status", f"unknown alert status {request.status}")
    return AlertFilter(
        user_id=request.user_id,
        detector=request.detector,
        min_severity=min_severity(request.min_severity),
        status=_ALERT_STATUS_FROM_PB.get(request.status),
    )


def anomaly_to_pb(a: Anomaly, m: anomalies_pb2.Anomaly) -> None:
    m.anomaly_id = a.anomaly_id
    m.user_id = a.user_id
    m.detector = a.detector
    m.detector_version = a.detector_version
    m.score = a.score
    m.severity = severity_to_pb(a.severity)
    m.event_ids.extend(a.event_ids)
    m.reason = a.reason
    m.observed = a.observed
    m.expected = a.expected
    m.baseline_observations = a.baseline_observations
    m.baseline_mature = a.baseline_mature
    for f in a.features:
        m.features.add(name=f.name, value=f.value, contribution=f.contribution)
    if a.occurred_at is not None:
        set_timestamp(m.occurred_at, a.occurred_at)
    if a.detected_at is not None:
        set_timestamp(m.detected_at, a.detected_at)
    m.alert_id = a.alert_id
    m.quarantined = a.quarantined
    attack_to_pb(a.tactics, a.techniques, m.tactics, m.techniques)


def alert_to_pb(a: Alert, m: alerts_pb2.Alert) -> None:
    m.alert_id = a.alert_id
    m.seq = a.seq
    m.user_id = a.user_id
    m.detector = a.detector
    m.severity = severity_to_pb(a.severity)
    m.status = _ALERT_STATUS_TO_PB[a.status]
    m.title = a.title
    m.reason = a.reason
    m.anomaly_ids.extend(a.anomaly_ids)
    m.anomaly_count = a.anomaly_count
    m.user_risk = a.user_risk
    for field_name in (
        "first_seen_at",
        "last_seen_at",
        "created_at",
        "updated_at",
        "acknowledged_at",
        "resolved_at",
    ):
        moment = getattr(a, field_name)
        if moment is not None:
            set_timestamp(getattr(m, field_name), moment)
    m.acknowledged_by = a.acknowledged_by
    m.resolved_by = a.resolved_by
    if a.resolution is not None:
        m.resolution = _RESOLUTION_TO_PB[a.resolution]
    m.note = a.note
    attack_to_pb(a.tactics, a.techniques, m.tactics, m.techniques)
    m.incident_id = a.incident_id


def _moment(m, field_name: str) -> datetime | None:
    return to_datetime(getattr(m, field_name)) if m.HasField(field_name) else None


def alert_from_pb(m: alerts_pb2.Alert) -> Alert:
    """The inverse of alert_to_pb, for alerts another process committed
    (the event log's change fan-out): every field the API shows survives."""
    return Alert(
        alert_id=m.alert_id,
        user_id=m.user_id,
        detector=m.detector,
        severity=Severity(m.severity),
        title=m.title,
        reason=m.reason,
        created_at=to_datetime(m.created_at),
        updated_at=to_datetime(m.updated_at),
        first_seen_at=to_datetime(m.first_seen_at),
        last_seen_at=to_datetime(m.last_seen_at),
        status=_ALERT_STATUS_FROM_PB[m.status],
        seq=m.seq,
        anomaly_ids=list(m.anomaly_ids),
        anomaly_count=m.anomaly_count,
        user_risk=m.user_risk,
        acknowledged_at=_moment(m, "acknowledged_at"),
        acknowledged_by=m.acknowledged_by,
        resolved_at=_moment(m, "resolved_at"),
        resolved_by=m.resolved_by,
        resolution=_RESOLUTION_FROM_PB.get(m.resolution),
        note=m.note,
        tactics=[t.tactic_id for t in m.tactics],
        techniques=[t.technique_id for t in m.techniques],
        incident_id=m.incident_id,
    )


# -- ATT&CK and incidents ---------------------------------------------------

_INCIDENT_STATUS_TO_PB = {
    IncidentStatus.OPEN: incidents_pb2.INCIDENT_STATUS_OPEN,
    IncidentStatus.ACKNOWLEDGED: incidents_pb2.INCIDENT_STATUS_ACKNOWLEDGED,
    IncidentStatus.RESOLVED: incidents_pb2.INCIDENT_STATUS_RESOLVED,
}
_INCIDENT_STATUS_FROM_PB = {v: k for k, v in _INCIDENT_STATUS_TO_PB.items()}
_ENTITY_TO_PB = {
    EntityKind.USER: incidents_pb2.ENTITY_KIND_USER,
    EntityKind.SOURCE_IP: incidents_pb2.ENTITY_KIND_SOURCE_ADDRESS,
}
_ENTITY_FROM_PB = {v: k for k, v in _ENTITY_TO_PB.items()}


def attack_to_pb(tactics, techniques, tactic_field, technique_field) -> None:
    for tactic_id in tactics:
        tactic_field.add(tactic_id=tactic_id, name=attack.tactic_name(tactic_id))
    for technique_id in techniques:
        technique_field.add(technique_id=technique_id, name=attack.technique_name(technique_id))


def incident_filter(request: service_pb2.ListIncidentsRequest) -> IncidentFilter:
    if request.status and request.status not in _INCIDENT_STATUS_FROM_PB:
        raise InvalidArgument.single("status", f"unknown incident status {request.status}")
    tactic = ""
    if request.tactic:
        try:
            tactic = attack.parse_tactic(request.tactic)
        except ValueError as exc:
            raise InvalidArgument.single("tactic", str(exc)) from None
    return IncidentFilter(
        user_id=request.user_id,
        status=_INCIDENT_STATUS_FROM_PB.get(request.status),
        min_severity=min_severity(request.min_severity),
        tactic=tactic,
        start_time=to_datetime(request.start_time) if request.HasField("start_time") else None,
        end_time=to_datetime(request.end_time) if request.HasField("end_time") else None,
    )


def incident_to_pb(i: Incident, m: incidents_pb2.Incident) -> None:
    m.incident_id = i.incident_id
    m.seq = i.seq
    m.entity_kind = _ENTITY_TO_PB[i.entity_kind]
    m.entity_id = i.entity_id
    m.title = i.title
    m.severity = severity_to_pb(i.severity)
    m.score = i.score
    m.status = _INCIDENT_STATUS_TO_PB[i.status]
    for s in i.signals:
        signal = m.signals.add(
            alert_id=s.alert_id,
            user_id=s.user_id,
            detector=s.detector,
            title=s.title,
            severity=int(s.severity),
            anomaly_count=s.anomaly_count,
            probability=s.probability,
            counted=s.counted,
            active=s.active,
        )
        set_timestamp(signal.first_seen_at, s.first_seen_at)
        set_timestamp(signal.last_seen_at, s.last_seen_at)
        attack_to_pb(s.tactics, s.techniques, signal.tactics, signal.techniques)
    attack_to_pb(i.tactics, i.techniques, m.tactics, m.techniques)
    m.alert_ids.extend(i.alert_ids)
    m.anomaly_ids.extend(i.anomaly_ids)
    m.anomaly_count = i.anomaly_count
    m.user_ids.extend(i.user_ids)
    m.source_ips.extend(i.source_ips)
    m.session_ids.extend(i.session_ids)
    for field_name in (
        "first_seen_at",
        "last_seen_at",
        "created_at",
        "updated_at",
        "acknowledged_at",
        "resolved_at",
    ):
        moment = getattr(i, field_name)
        if moment is not None:
            set_timestamp(getattr(m, field_name), moment)
    m.acknowledged_by = i.acknowledged_by
    m.resolved_by = i.resolved_by
    if i.resolution is not None:
        m.resolution = _RESOLUTION_TO_PB[i.resolution]
    m.note = i.note


def incident_from_pb(m: incidents_pb2.Incident) -> Incident:
    """The inverse of incident_to_pb (as alert_from_pb). What the API does
    not show (the risk an incident adds, what its signals echo) stays at
    its default: only the process that correlates needs it."""
    return Incident(
        incident_id=m.incident_id,
        entity_kind=_ENTITY_FROM_PB[m.entity_kind],
        entity_id=m.entity_id,
        title=m.title,
        severity=Severity(m.severity),
        score=m.score,
        created_at=to_datetime(m.created_at),
        updated_at=to_datetime(m.updated_at),
        first_seen_at=to_datetime(m.first_seen_at),
        last_seen_at=to_datetime(m.last_seen_at),
        status=_INCIDENT_STATUS_FROM_PB[m.status],
        seq=m.seq,
        signals=[
            Signal(
                alert_id=s.alert_id,
                user_id=s.user_id,
                detector=s.detector,
                title=s.title,
                severity=Severity(s.severity),
                anomaly_count=s.anomaly_count,
                first_seen_at=to_datetime(s.first_seen_at),
                last_seen_at=to_datetime(s.last_seen_at),
                tactics=[t.tactic_id for t in s.tactics],
                techniques=[t.technique_id for t in s.techniques],
                active=s.active,
                probability=s.probability,
                counted=s.counted,
            )
            for s in m.signals
        ],
        session_ids=list(m.session_ids),
        user_ids=list(m.user_ids),
        source_ips=list(m.source_ips),
        tactics=[t.tactic_id for t in m.tactics],
        techniques=[t.technique_id for t in m.techniques],
        anomaly_ids=list(m.anomaly_ids),
        anomaly_count=m.anomaly_count,
        acknowledged_at=_moment(m, "acknowledged_at"),
        acknowledged_by=m.acknowledged_by,
        resolved_at=_moment(m, "resolved_at"),
        resolved_by=m.resolved_by,
        resolution=_RESOLUTION_FROM_PB.get(m.resolution),
        note=m.note,
    )


def event_log_status_to_pb(s: EventLogStatus, m: service_pb2.EventLogStatus) -> None:
    m.partitions = s.partitions
    set_timestamp(m.observed_at, s.observed_at)
    if s.unavailable_reason:
        m.unavailable_reason = s.unavailable_reason
        return
    m.lag_events = s.total_lag
    for partition, lag in enumerate(s.lag):
        m.partition_lags.add(partition=partition, lag_events=lag)
    m.live_workers = s.live_workers
    if s.oldest_at is not None and s.total_lag:
        set_duration(m.oldest_lag_age, max(s.observed_at - s.oldest_at, timedelta(0)))


def incident_detail_to_pb(d: IncidentDetail) -> service_pb2.GetIncidentResponse:
    reply = service_pb2.GetIncidentResponse()
    incident_to_pb(d.incident, reply.incident)
    for alert in d.alerts:
        alert_to_pb(alert, reply.alerts.add())
    for occurred_at, item in d.timeline:
        entry = reply.timeline.add()
        set_timestamp(entry.occurred_at, occurred_at)
        if isinstance(item, Anomaly):
            anomaly_to_pb(item, entry.anomaly)
        else:  # the timeline holds anomalies and events only
            event_to_pb(cast(ActivityEvent, item), entry.event)
    return reply


def _stats_to_pb(s: RunningStats, m: baselines_pb2.RunningStats) -> None:
    m.count = s.count
    m.mean = s.mean
    m.stddev = s.stddev
    m.min = s.min or 0.0
    m.max = s.max or 0.0


def _known_to_pb(values: KnownValues, target) -> None:
    for seen in values.seen():
        item = target.add(value=seen.value, count=seen.count)
        set_timestamp(item.first_seen_at, seen.first_seen_at)
        set_timestamp(item.last_seen_at, seen.last_seen_at)


def baseline_to_pb(b: UserBaseline) -> baselines_pb2.UserBaseline:
    m = baselines_pb2.UserBaseline(
        user_id=b.user_id,
        timezone=b.timezone,
        peer_group=b.peer_group,
        observation_count=b.observation_count,
        days_covered=b.days_covered,
        mature=b.mature,
        login_hour_of_week=b.login_hour_of_week,
        api_error_share=b.api_error_share,
    )
    if b.first_seen_at is not None:
        set_timestamp(m.first_seen_at, b.first_seen_at)
    if b.last_seen_at is not None:
        set_timestamp(m.last_seen_at, b.last_seen_at)
    _stats_to_pb(b.logins_per_day, m.logins_per_day)
    _stats_to_pb(b.failed_logins_per_hour, m.failed_logins_per_hour)
    _stats_to_pb(b.log_session_seconds, m.log_session_seconds)
    _stats_to_pb(b.api_calls_per_hour, m.api_calls_per_hour)
    _stats_to_pb(b.bytes_per_hour, m.bytes_per_hour)
    for seen in b.endpoints.seen():
        item = m.endpoints.add(endpoint=seen.value, count=seen.count)
        set_timestamp(item.first_seen_at, seen.first_seen_at)
        set_timestamp(item.last_seen_at, seen.last_seen_at)
    _known_to_pb(b.countries, m.countries)
    _known_to_pb(b.cities, m.cities)
    _known_to_pb(b.source_ips, m.source_ips)
    _known_to_pb(b.devices, m.devices)
    if b.last_login is not None:
        last = b.last_login
        set_timestamp(m.last_login.occurred_at, last.occurred_at)
        m.last_login.source_ip = last.source_ip
        m.last_login.country_code = last.country_code
        m.last_login.city = last.city
        if last.latitude is not None and last.longitude is not None:
            m.last_login.latitude = last.latitude
            m.last_login.longitude = last.longitude
    return m


_NOTIFICATION_STATUS = {
    NotificationStatus.PENDING: notifications_pb2.NOTIFICATION_STATUS_PENDING,
    NotificationStatus.DELIVERED: notifications_pb2.NOTIFICATION_STATUS_DELIVERED,
    NotificationStatus.DEAD: notifications_pb2.NOTIFICATION_STATUS_DEAD,
}


def notification_status(value: int) -> NotificationStatus | None:
    """A NotificationStatus filter (unset: any)."""
    if value == notifications_pb2.NOTIFICATION_STATUS_UNSPECIFIED:
        return None
    for status, number in _NOTIFICATION_STATUS.items():
        if number == value:
            return status
    raise InvalidArgument.single("status", f"unknown notification status {value}")


def notification_to_pb(n: Notification, m: notifications_pb2.Notification) -> None:
    m.message_id = n.message_id
    m.destination = n.destination
    m.event_type = n.event_type
    m.subject_id = n.subject_id
    m.severity = n.severity  # type: ignore[assignment]  # the proto enum's numbers
    m.status = _NOTIFICATION_STATUS[n.status]
    m.attempts = n.attempts
    m.last_error = n.last_error
    m.position = n.position
    set_timestamp(m.created_at, n.created_at)
    if n.status is NotificationStatus.PENDING and n.next_attempt_at is not None:
        set_timestamp(m.next_attempt_at, n.next_attempt_at)
    if n.delivered_at is not None:
        set_timestamp(m.delivered_at, n.delivered_at)


def destination_to_pb(d: DestinationInfo, m: notifications_pb2.NotificationDestination) -> None:
    m.name, m.kind, m.format = d.name, d.kind, d.format
    m.pending, m.delivered, m.dead = d.pending, d.delivered, d.dead
    if d.oldest_pending_at is not None:
        set_timestamp(m.oldest_pending_at, d.oldest_pending_at)
