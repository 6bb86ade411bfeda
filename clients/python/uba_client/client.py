"""UbaClient: a typed, retrying client of uba.v1.BehaviorAnalyticsService.

Every call has a deadline (`timeout`). Calls are retried on UNAVAILABLE with
exponential backoff; ingest calls also on DEADLINE_EXCEEDED and
RESOURCE_EXHAUSTED (waiting at least the server's google.rpc.RetryInfo
delay). Before the first attempt the client gives every event without an
`event_id` a UUIDv7, so a retry resends the same ids and the server stores
each event once, even when the first attempt was stored but its reply lost.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

import grpc

from uba.v1 import (
    alerts_pb2,
    baselines_pb2,
    events_pb2,
    incidents_pb2,
    service_pb2,
    service_pb2_grpc,
)
from uba_client import events as ev
from uba_client.errors import UbaError
from uba_client.ids import new_event_id
from uba_client.retry import DEFAULT_POLICY, INGEST_POLICY, RETRY_DEFAULT, RETRY_INGEST, RetryPolicy

T = TypeVar("T")
MAX_BATCH = 1000  # the server's limit per RecordActivities call
# The server takes 16 MiB; a full batch of large events fits.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

_STATUS_NAMES = {
    service_pb2.RECORD_STATUS_ACCEPTED: "accepted",
    service_pb2.RECORD_STATUS_DUPLICATE: "duplicate",
    service_pb2.RECORD_STATUS_INVALID: "invalid",
}


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What happened to one event: status is 'accepted', 'duplicate',
    'invalid' (see violations) or, from BatchRecorder only, 'failed' (the
    batch could not be delivered; see error)."""

    index: int
    event_id: str
    status: str
    violations: tuple[tuple[str, str], ...] = ()
    received_at: datetime | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Per-item results of record_batch, in input order, with counts."""

    results: list[RecordResult]

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def accepted(self) -> int:
        return self.count("accepted")

    @property
    def duplicate(self) -> int:
        return self.count("duplicate")

    @property
    def invalid(self) -> int:
        return self.count("invalid")


def _credentials(
    tls: Any, client_cert: Any = None, client_key: Any = None
) -> grpc.ChannelCredentials | None:
    """tls None: plaintext; True: the system's roots; bytes: PEM roots; str
    or Path: a PEM file of roots. client_cert and client_key (PEM bytes or
    file paths) are presented to servers that require a client certificate."""
    if tls is None or tls is False:
        if client_cert or client_key:
            raise ValueError("a client certificate needs TLS (tls=True or the server's CA)")
        return None
    if bool(client_cert) != bool(client_key):
        raise ValueError("client_cert and client_key go together")
    roots = None if tls is True else _pem(tls)
    return grpc.ssl_channel_credentials(
        root_certificates=roots, private_key=_pem(client_key), certificate_chain=_pem(client_cert)
    )


def _pem(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


def _set_time(target, value: Any) -> None:
    if value is not None:
        target.FromDatetime(ev.to_datetime(value))


class UbaClient:
    """A connection to one uba server. Thread-safe; close() when done (or
    use it as a context manager)."""

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        api_key: str | None = None,
        tls: Any = None,
        timeout: float = 10.0,
        client_cert: Any = None,
        client_key: Any = None,
        retry: RetryPolicy = DEFAULT_POLICY,
        ingest_retry: RetryPolicy = INGEST_POLICY,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.target = target
        self.timeout = timeout
        self.retry = retry
        self.ingest_retry = ingest_retry
        self._sleep = sleep
        # Reconnect quickly after a server restart: gRPC's default backoff
        # (1 s growing to 120 s) would outlast our retries.
        options = [
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        credentials = _credentials(tls, client_cert, client_key)
        self._channel = (
            grpc.secure_channel(target, credentials, options)
            if credentials
            else grpc.insecure_channel(target, options)
        )
        self.stub = service_pb2_grpc.BehaviorAnalyticsServiceStub(self._channel)
        # The server checks the key in a later version; sending it now keeps
        # callers ready for that.
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )

    # -- plumbing -------------------------------------------------------------

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> UbaClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(
        self,
        method: Callable[..., T],
        request,
        *,
        retry_on=RETRY_DEFAULT,
        policy: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> T:
        policy = policy or self.retry
        failures = 0
        while True:
            try:
                return method(request, timeout=timeout or self.timeout, metadata=self.metadata)
            except grpc.RpcError as err:
                error = UbaError.from_rpc(err, self.target)
                failures += 1
                if error.code not in retry_on or policy.gives_up_after(failures):
                    raise error from None
                self._sleep(max(policy.backoff(failures), error.retry_delay or 0.0))

    # -- ingest ---------------------------------------------------------------

    @staticmethod
    def _with_id(target: events_pb2.ActivityEvent, source: events_pb2.ActivityEvent) -> None:
        target.CopyFrom(source)
        if not target.event_id:
            target.event_id = new_event_id()

    def record(self, event: events_pb2.ActivityEvent | None = None, **fields: Any) -> RecordResult:
        """Records one event (a message, or the fields of `uba_client.event`).
        Returns once the server has committed it."""
        if event is None:
            event = ev.event(**fields)
        request = service_pb2.RecordActivityRequest()
        self._with_id(request.event, event)
        reply = self._call(
            self.stub.RecordActivity, request, retry_on=RETRY_INGEST, policy=self.ingest_retry
        )
        return RecordResult(
            0,
            reply.event_id,
            "duplicate" if reply.duplicate else "accepted",
            received_at=reply.received_at.ToDatetime(ev.UTC)
            if reply.HasField("received_at")
            else None,
        )

    def record_batch(
        self, events: Iterable[events_pb2.ActivityEvent], max_batch: int = MAX_BATCH
    ) -> BatchResult:
        """Records any number of events, in calls of at most `max_batch`;
        each item gets its own status, and invalid items do not stop valid
        ones from being stored."""
        results: list[RecordResult] = []
        request = service_pb2.RecordActivitiesRequest()

        def send() -> None:
            reply = self._call(
                self.stub.RecordActivities, request, retry_on=RETRY_INGEST, policy=self.ingest_retry
            )
            offset = len(results)
            for r in reply.results:
                results.append(
                    RecordResult(
                        offset + r.index,
                        r.event_id,
                        _STATUS_NAMES.get(r.status, "unknown"),
                        tuple((v.field, v.description) for v in r.violations),
                    )
                )
            del request.events[:]

        for event in events:
            self._with_id(request.events.add(), event)
            if len(request.events) >= max_batch:
                send()
        if len(request.events):
            send()
        return BatchResult(results)

    # -- the log --------------------------------------------------------------

    @staticmethod
    def _log_filter(request, user_id: str, type: Any, start: Any, end: Any, source_ip: str) -> None:
        request.user_id = user_id or ""
        if type:
            request.type = ev.activity_type(type)
        _set_time(request.start_time, start)
        _set_time(request.end_time, end)
        request.source_ip = source_ip or ""

    def list_logs(
        self,
        user_id: str = "",
        type: Any = None,
        start: Any = None,
        end: Any = None,
        source_ip: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> service_pb2.ListLogsResponse:
        """One page of stored events, newest first."""
        request = service_pb2.ListLogsRequest(page_size=page_size, page_token=page_token)
        self._log_filter(request, user_id, type, start, end, source_ip)
        return self._call(self.stub.ListLogs, request)

    def iter_logs(
        self, page_size: int = 1000, **filters: Any
    ) -> Iterator[events_pb2.ActivityEvent]:
        """Every matching event, newest first, page after page."""
        return _pages(self.list_logs, "events", page_size, filters)

    def export(
        self,
        path: str | Path | IO[bytes],
        format: str = "csv",
        user_id: str = "",
        type: Any = None,
        start: Any = None,
        end: Any = None,
        source_ip: str = "",
        timeout: float | None = 3600.0,
    ) -> int:
        """Streams the matching events (oldest first) as csv, json or ndjson
        into `path` (or a binary file object); returns the bytes written. A
        file path is written under a temporary name and renamed at the end,
        so a failed export leaves no half file behind."""
        request = service_pb2.ExportLogsRequest(format=format)
        self._log_filter(request, user_id, type, start, end, source_ip)
        if not isinstance(path, (str, Path)):
            return self._export_into(request, path, timeout)
        target = Path(path)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".part", dir=target.parent or "."
        )
        try:
            with os.fdopen(fd, "wb") as out:
                written = self._export_into(request, out, timeout)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
        return written

    def _export_into(self, request, out: IO[bytes], timeout: float | None) -> int:
        failures = 0
        while True:
            written = 0
            try:
                for chunk in self.stub.ExportLogs(request, timeout=timeout, metadata=self.metadata):
                    out.write(chunk.data)
                    written += len(chunk.data)
                return written
            except grpc.RpcError as err:
                error = UbaError.from_rpc(err, self.target)
                failures += 1
                # Only a stream that failed before its first byte can start over.
                if (
                    written
                    or error.code not in RETRY_DEFAULT
                    or self.retry.gives_up_after(failures)
                ):
                    raise error from None
                self._sleep(self.retry.backoff(failures))

    # -- dashboard, capabilities ---------------------------------------------

    def dashboard(self, window: timedelta | None = None) -> service_pb2.GetDashboardResponse:
        request = service_pb2.GetDashboardRequest()
        if window is not None:
            request.window.FromTimedelta(window)
        return self._call(self.stub.GetDashboard, request)

    def capabilities(self) -> service_pb2.GetCapabilitiesResponse:
        return self._call(self.stub.GetCapabilities, service_pb2.GetCapabilitiesRequest())

    # -- anomalies, alerts, baselines ----------------------------------------

    def list_anomalies(
        self,
        user_id: str = "",
        detector: str = "",
        min_severity: Any = None,
        start: Any = None,
        end: Any = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> service_pb2.ListAnomaliesResponse:
        request = service_pb2.ListAnomaliesRequest(
            user_id=user_id, detector=detector, page_size=page_size, page_token=page_token
        )
        if min_severity:
            request.min_severity = ev.severity(min_severity)
        _set_time(request.start_time, start)
        _set_time(request.end_time, end)
        return self._call(self.stub.ListAnomalies, request)

    def list_alerts(
        self,
        user_id: str = "",
        detector: str = "",
        min_severity: Any = None,
        status: Any = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> service_pb2.ListAlertsResponse:
        request = service_pb2.ListAlertsRequest(
            user_id=user_id, detector=detector, page_size=page_size, page_token=page_token
        )
        if min_severity:
            request.min_severity = ev.severity(min_severity)
        if status:
            request.status = ev.alert_status(status)
        return self._call(self.stub.ListAlerts, request)

    def iter_alerts(self, page_size: int = 1000, **filters: Any) -> Iterator[alerts_pb2.Alert]:
        return _pages(self.list_alerts, "alerts", page_size, filters)

    def list_audit_events(
        self, actor: str = "", action: str = "", page_size: int = 0, page_token: str = ""
    ) -> service_pb2.ListAuditEventsResponse:
        """A page of the audit trail, newest first (needs an admin key)."""
        return self._call(
            self.stub.ListAuditEvents,
            service_pb2.ListAuditEventsRequest(
                actor=actor, action=action, page_size=page_size, page_token=page_token
            ),
        )

    def forget_user(self, user_id: str) -> service_pb2.ForgetUserResponse:
        """Erases a person: their events and baseline go, their id becomes a
        pseudonym in the facts kept (needs an admin key). Idempotent."""
        return self._call(self.stub.ForgetUser, service_pb2.ForgetUserRequest(user_id=user_id))

    def list_notifications(
        self, destination: str = "", status: Any = 0, page_size: int = 0, page_token: str = ""
    ) -> service_pb2.ListNotificationsResponse:
        """A page of the delivery outbox, oldest first, with every
        destination's backlog (needs an admin key). `status`: "pending",
        "delivered", "dead" or a uba.v1.NotificationStatus (0: any)."""
        return self._call(
            self.stub.ListNotifications,
            service_pb2.ListNotificationsRequest(
                destination=destination,
                status=ev.notification_status(status or 0),
                page_size=page_size,
                page_token=page_token,
            ),
        )

    def retry_notifications(self, destination: str, message_ids: Sequence[str] = ()) -> int:
        """Sends a destination's dead letters again (all, or those named);
        returns how many went back to pending."""
        reply = self._call(
            self.stub.RetryNotifications,
            service_pb2.RetryNotificationsRequest(
                destination=destination, message_ids=list(message_ids)
            ),
        )
        return reply.retried

    def send_test_notification(self, destination: str, text: str = ""):
        """Queues a test message to one destination; returns the
        notification (pending) to follow with list_notifications."""
        reply = self._call(
            self.stub.SendTestNotification,
            service_pb2.SendTestNotificationRequest(destination=destination, text=text),
        )
        return reply.notification

    def acknowledge_alert(self, alert_id: str, note: str = "") -> alerts_pb2.Alert:
        reply = self._call(
            self.stub.AcknowledgeAlert,
            service_pb2.AcknowledgeAlertRequest(alert_id=alert_id, note=note),
        )
        return reply.alert

    def resolve_alert(
        self, alert_id: str, resolution: Any, note: str = "", suppress_for: timedelta | None = None
    ) -> alerts_pb2.Alert:
        request = service_pb2.ResolveAlertRequest(
            alert_id=alert_id, resolution=ev.resolution(resolution), note=note
        )
        if suppress_for is not None:
            request.suppress_for.FromTimedelta(suppress_for)
        return self._call(self.stub.ResolveAlert, request).alert

    def backfill(
        self,
        start: Any,
        end: Any = None,
        raise_alerts: bool = False,
        timeout: float | None = 3600.0,
    ) -> service_pb2.BackfillResponse:
        """Rebuilds baselines from stored history (can take minutes: its own deadline)."""
        request = service_pb2.BackfillRequest(raise_alerts=raise_alerts)
        _set_time(request.start_time, start)
        if end is not None:
            _set_time(request.end_time, end)
        return self._call(self.stub.Backfill, request, timeout=timeout)

    def train_model(
        self, start: Any = None, end: Any = None, timeout: float | None = 3600.0
    ) -> service_pb2.TrainModelResponse:
        """Trains a new Isolation Forest model on stored history (enhanced mode)."""
        request = service_pb2.TrainModelRequest()
        if start is not None:
            _set_time(request.start_time, start)
        if end is not None:
            _set_time(request.end_time, end)
        return self._call(self.stub.TrainModel, request, timeout=timeout)

    def user_baseline(self, user_id: str) -> baselines_pb2.UserBaseline:
        return self._call(
            self.stub.GetUserBaseline, service_pb2.GetUserBaselineRequest(user_id=user_id)
        ).baseline

    def follow_alerts(
        self,
        after_seq: int = 0,
        min_severity: Any = None,
        user_id: str = "",
        detector: str = "",
        idle_timeout: float = 60.0,
        retry: RetryPolicy | None = None,
    ):
        """A resumable iterator of alert changes; see AlertFollower."""
        from uba_client.alerts import AlertFollower

        return AlertFollower(
            self,
            after_seq=after_seq,
            min_severity=min_severity,
            user_id=user_id,
            detector=detector,
            idle_timeout=idle_timeout,
            retry=retry,
        )

    # -- incidents ----------------------------------------------------------------

    def list_incidents(
        self,
        user_id: str = "",
        status: Any = None,
        min_severity: Any = None,
        tactic: str = "",
        start: Any = None,
        end: Any = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> service_pb2.ListIncidentsResponse:
        """A page of incidents, most recently changed first. `tactic` is an
        ATT&CK id ("TA0006") or name ("credential-access")."""
        request = service_pb2.ListIncidentsRequest(
            user_id=user_id, tactic=tactic, page_size=page_size, page_token=page_token
        )
        if status:
            request.status = ev.incident_status(status)
        if min_severity:
            request.min_severity = ev.severity(min_severity)
        _set_time(request.start_time, start)
        _set_time(request.end_time, end)
        return self._call(self.stub.ListIncidents, request)

    def iter_incidents(
        self, page_size: int = 1000, **filters: Any
    ) -> Iterator[incidents_pb2.Incident]:
        return _pages(self.list_incidents, "incidents", page_size, filters)

    def get_incident(self, incident_id: str) -> service_pb2.GetIncidentResponse:
        """The incident, its member alerts and its timeline."""
        return self._call(
            self.stub.GetIncident, service_pb2.GetIncidentRequest(incident_id=incident_id)
        )

    def acknowledge_incident(self, incident_id: str, note: str = "") -> incidents_pb2.Incident:
        return self._call(
            self.stub.AcknowledgeIncident,
            service_pb2.AcknowledgeIncidentRequest(incident_id=incident_id, note=note),
        ).incident

    def resolve_incident(
        self, incident_id: str, resolution: Any, note: str = ""
    ) -> incidents_pb2.Incident:
        """Closes the incident; its open member alerts get the same resolution."""
        return self._call(
            self.stub.ResolveIncident,
            service_pb2.ResolveIncidentRequest(
                incident_id=incident_id, resolution=ev.resolution(resolution), note=note
            ),
        ).incident

    def follow_incidents(
        self,
        after_seq: int = 0,
        min_severity: Any = None,
        user_id: str = "",
        idle_timeout: float = 60.0,
        retry: RetryPolicy | None = None,
    ):
        """A resumable iterator of incident changes (uba.v1.Incident), on the
        alerts' stream and sequence; see AlertFollower."""
        from uba_client.alerts import AlertFollower

        return AlertFollower(
            self,
            after_seq=after_seq,
            min_severity=min_severity,
            user_id=user_id,
            idle_timeout=idle_timeout,
            retry=retry,
            kinds=("incident",),
        )


def _pages(list_page, field: str, page_size: int, filters: dict) -> Iterator:
    """Every item of a paged list (AIP-158), page after page."""
    token = ""
    while True:
        page = list_page(page_size=page_size, page_token=token, **filters)
        yield from getattr(page, field)
        token = page.next_page_token
        if not token:
            return
