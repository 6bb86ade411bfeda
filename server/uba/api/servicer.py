"""The gRPC servicer: each method converts the request, calls the domain,
converts the reply. Errors are mapped in uba.api.errors, not here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import grpc
from google.api import httpbody_pb2

from uba import observability
from uba.api import converters as conv
from uba.api.alert_stream import AlertStream
from uba.api.auth import current_principal
from uba.api.bridge import LoopBridge
from uba.api.broker import AlertSubscriptionFilter
from uba.api.calls import current_call
from uba.config import MAX_BATCH_SIZE
from uba.domain.alerts import Alert
from uba.domain.backfill import BackfillService
from uba.domain.backlog import EventLogStatus
from uba.domain.dashboard import DashboardService
from uba.domain.erasure import ErasureService, LoggedErasureService
from uba.domain.errors import DomainError, InvalidArgument, Unimplemented
from uba.domain.incidents import Incident, IncidentService
from uba.domain.ingest import IngestService
from uba.domain.investigation import InvestigationService
from uba.domain.logs import LogService
from uba.domain.notifications import NotificationService
from uba.domain.security import AuditTrail
from uba.domain.training import TrainingService
from uba.v1 import service_pb2, service_pb2_grpc

T = TypeVar("T")
MAX_BATCH = MAX_BATCH_SIZE


class Capabilities:
    """What GetCapabilities reports; filled by the composition root."""

    def __init__(
        self,
        version: str,
        storage_backend: str,
        analytics_mode: str,
        detectors: list[dict],
        event_log: Callable[[], Awaitable[EventLogStatus]] | None = None,
    ):
        self.version = version
        self.storage_backend = storage_backend
        self.analytics_mode = analytics_mode
        self.detectors = detectors
        # A front end of the event log: its workers' backlog (cached reads).
        self.event_log = event_log


class BehaviorAnalyticsServicer(service_pb2_grpc.BehaviorAnalyticsServiceServicer):
    def __init__(
        self,
        ingest: IngestService,
        logs: LogService,
        dashboard: DashboardService,
        investigation: InvestigationService,
        alert_stream: AlertStream,
        backfill: BackfillService,
        training: TrainingService,
        capabilities: Capabilities,
        executor: Executor,
        audit_trail: AuditTrail | None = None,
        incidents: IncidentService | None = None,
        notifications: NotificationService | None = None,
        erasure: ErasureService | LoggedErasureService | None = None,
    ):
        self._ingest = ingest
        self._logs = logs
        self._dashboard = dashboard
        self._investigation = investigation
        self._alert_stream = alert_stream
        self._backfill = backfill
        self._training = training
        self._capabilities = capabilities
        self._executor = executor
        self._audit_trail = audit_trail
        self._incidents = incidents
        self._notifications = notifications
        self._erasure = erasure
        # Built inside the running server, so the loop is the server's.
        self._bridge = LoopBridge(asyncio.get_running_loop())

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs storage-bound work off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- ingest -------------------------------------------------------------

    async def RecordActivity(
        self, request: service_pb2.RecordActivityRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.RecordActivityResponse:
        if not request.HasField("event"):
            raise InvalidArgument.single("event", "required")
        event = conv.event_from_pb(request.event)
        recorder = observability.recorder
        recorder.received("RecordActivity", (event.source,))
        try:
            (outcome,) = await self._bridge.wait(self._ingest.record_one(event))
        except InvalidArgument:
            recorder.ingest("RecordActivity", ((event.source, "invalid"),))
            raise
        except DomainError:  # queue full, storage unavailable
            recorder.ingest("RecordActivity", ((event.source, "failed"),))
            raise
        recorder.ingest("RecordActivity", ((event.source, outcome.status.value),))
        return conv.record_activity_response(outcome)

    async def RecordActivities(
        self, request: service_pb2.RecordActivitiesRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.RecordActivitiesResponse:
        if len(request.events) > MAX_BATCH:
            raise InvalidArgument.single(
                "events", f"{len(request.events)} events; at most {MAX_BATCH} per batch"
            )
        events = [conv.event_from_pb(m) for m in request.events]
        recorder = observability.recorder
        sources = [e.source for e in events]
        recorder.received("RecordActivities", sources)
        try:
            prepared, stored = self._ingest.record_batch(events)
            outcomes = self._ingest.merge(
                prepared, await self._bridge.wait(stored) if stored else None
            )
        except DomainError:  # queue full, storage unavailable: no item was stored
            recorder.ingest("RecordActivities", ((s, "failed") for s in sources))
            raise
        recorder.ingest(
            "RecordActivities", zip(sources, (o.status.value for o in outcomes), strict=True)
        )
        return conv.record_activities_response(outcomes)

    # -- the log ------------------------------------------------------------

    async def ListLogs(
        self, request: service_pb2.ListLogsRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ListLogsResponse:
        page = await self._blocking(
            self._logs.list, conv.event_filter(request), request.page_size, request.page_token
        )
        reply = service_pb2.ListLogsResponse(next_page_token=page.next_page_token)
        for event in page.events:
            conv.event_to_pb(event, reply.events.add())
        return reply

    async def ExportLogs(
        self, request: service_pb2.ExportLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        content_type, chunks = self._logs.export(conv.event_filter(request), request.format)
        sentinel = object()
        recorder = observability.recorder
        recorder.stream_opened("ExportLogs")
        try:
            while True:
                # Each chunk may read a page from storage: keep that off the loop.
                chunk = await self._blocking(next, chunks, sentinel)
                if chunk is sentinel:
                    return
                yield httpbody_pb2.HttpBody(content_type=content_type, data=chunk)
        finally:
            recorder.stream_closed("ExportLogs")

    async def GetDashboard(
        self, request: service_pb2.GetDashboardRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.GetDashboardResponse:
        window = conv.to_timedelta(request.window) if request.HasField("window") else None
        return conv.dashboard_response(await self._blocking(self._dashboard.get, window))

    async def GetCapabilities(
        self, request: service_pb2.GetCapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.GetCapabilitiesResponse:
        caps = self._capabilities
        reply = service_pb2.GetCapabilitiesResponse(
            version=caps.version,
            storage_backend=caps.storage_backend,
            analytics_mode=(
                service_pb2.ANALYTICS_MODE_ENHANCED
                if caps.analytics_mode == "enhanced"
                else service_pb2.ANALYTICS_MODE_BASIC
            ),
            max_batch_size=MAX_BATCH,
            export_formats=["csv", "json", "ndjson"],
        )
        for d in caps.detectors:
            reply.detectors.add(**d)
        if caps.event_log is not None:
            conv.event_log_status_to_pb(await caps.event_log(), reply.event_log)
        return reply

    # -- detection ----------------------------------------------------------

    async def ListAnomalies(
        self, request: service_pb2.ListAnomaliesRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ListAnomaliesResponse:
        page = await self._blocking(
            self._investigation.anomalies,
            conv.anomaly_filter(request),
            request.page_size,
            request.page_token,
        )
        reply = service_pb2.ListAnomaliesResponse(next_page_token=page.next_page_token)
        for anomaly in page.items:
            conv.anomaly_to_pb(anomaly, reply.anomalies.add())
        return reply

    async def ListAlerts(
        self, request: service_pb2.ListAlertsRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ListAlertsResponse:
        page = await self._blocking(
            self._investigation.alerts,
            conv.alert_filter(request),
            request.page_size,
            request.page_token,
        )
        reply = service_pb2.ListAlertsResponse(next_page_token=page.next_page_token)
        for alert in page.items:
            conv.alert_to_pb(alert, reply.alerts.add())
        return reply

    async def StreamAlerts(
        self, request: service_pb2.StreamAlertsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[service_pb2.StreamAlertsResponse]:
        if request.after_seq < 0:
            raise InvalidArgument.single("after_seq", "must not be negative")
        flt = AlertSubscriptionFilter(
            conv.min_severity(request.min_severity),
            request.user_id,
            request.detector,
            request.include_incidents,
        )
        recorder = observability.recorder
        recorder.stream_opened("StreamAlerts")
        try:
            async for _kind, item, seq in self._alert_stream.follow(flt, request.after_seq):
                reply = service_pb2.StreamAlertsResponse(seq=seq)
                if isinstance(item, Incident):
                    conv.incident_to_pb(item, reply.incident)
                elif isinstance(item, Alert):
                    conv.alert_to_pb(item, reply.alert)
                else:  # a heartbeat: the time it was sent
                    conv.set_timestamp(reply.heartbeat.sent_at, item)
                yield reply
        finally:
            recorder.stream_closed("StreamAlerts")

    async def AcknowledgeAlert(
        self, request: service_pb2.AcknowledgeAlertRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.AcknowledgeAlertResponse:
        future = self._investigation.acknowledge(request.alert_id, principal(context), request.note)
        reply = service_pb2.AcknowledgeAlertResponse()
        conv.alert_to_pb(await self._bridge.wait(future), reply.alert)
        return reply

    async def ResolveAlert(
        self, request: service_pb2.ResolveAlertRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ResolveAlertResponse:
        suppress_for = (
            conv.to_timedelta(request.suppress_for) if request.HasField("suppress_for") else None
        )
        future = self._investigation.resolve(
            request.alert_id,
            conv.resolution(request.resolution),
            principal(context),
            request.note,
            suppress_for,
        )
        reply = service_pb2.ResolveAlertResponse()
        conv.alert_to_pb(await self._bridge.wait(future), reply.alert)
        return reply

    # -- incidents ----------------------------------------------------------

    def _incident_service(self) -> IncidentService:
        if self._incidents is None:
            raise Unimplemented("no incidents in this server")
        return self._incidents

    async def ListIncidents(
        self, request: service_pb2.ListIncidentsRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ListIncidentsResponse:
        page = await self._blocking(
            self._incident_service().list,
            conv.incident_filter(request),
            request.page_size,
            request.page_token,
        )
        reply = service_pb2.ListIncidentsResponse(next_page_token=page.next_page_token)
        for incident in page.items:
            conv.incident_to_pb(incident, reply.incidents.add())
        return reply

    async def GetIncident(
        self, request: service_pb2.GetIncidentRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.GetIncidentResponse:
        detail = await self._blocking(self._incident_service().get, request.incident_id)
        return conv.incident_detail_to_pb(detail)

    async def AcknowledgeIncident(
        self, request: service_pb2.AcknowledgeIncidentRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.AcknowledgeIncidentResponse:
        future = self._incident_service().acknowledge(
            request.incident_id, principal(context), request.note
        )
        reply = service_pb2.AcknowledgeIncidentResponse()
        conv.incident_to_pb(await self._bridge.wait(future), reply.incident)
        return reply

    async def ResolveIncident(
        self, request: service_pb2.ResolveIncidentRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ResolveIncidentResponse:
        future = self._incident_service().resolve(
            request.incident_id,
            conv.resolution(request.resolution),
            principal(context),
            request.note,
        )
        reply = service_pb2.ResolveIncidentResponse()
        conv.incident_to_pb(await self._bridge.wait(future), reply.incident)
        return reply

    async def Backfill(
        self, request: service_pb2.BackfillRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.BackfillResponse:
        start = conv.to_datetime(request.start_time) if request.HasField("start_time") else None
        end = conv.to_datetime(request.end_time) if request.HasField("end_time") else None
        result = await self._blocking(self._backfill.run, start, end, request.raise_alerts)
        return service_pb2.BackfillResponse(
            event_count=result.event_count,
            user_count=result.user_count,
            anomaly_count=result.anomaly_count,
            alert_count=result.alert_count,
        )

    async def ForgetUser(
        self, request: service_pb2.ForgetUserRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ForgetUserResponse:
        if self._erasure is None:
            raise Unimplemented("erasure is not available on this server")
        # Not audited by the interceptor, whose entry would carry the id in
        # clear: the erasure writes its own entry, with the pseudonym only.
        call = current_call.get()
        report = await self._blocking(
            self._erasure.forget,
            request.user_id,
            current_principal.get(),
            call.origin.describe() if call is not None else "",
        )
        return service_pb2.ForgetUserResponse(
            pseudonym=report.pseudonym,
            events_deleted=report.events_deleted,
            records_deleted=report.records_deleted,
            records_pseudonymised=report.records_pseudonymised,
        )

    async def TrainModel(
        self, request: service_pb2.TrainModelRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.TrainModelResponse:
        start = conv.to_datetime(request.start_time) if request.HasField("start_time") else None
        end = conv.to_datetime(request.end_time) if request.HasField("end_time") else None
        info = await self._blocking(self._training.train, start, end)
        return service_pb2.TrainModelResponse(
            version=info.version,
            event_count=info.events,
            row_count=info.rows,
            features=list(info.features),
            threshold=info.threshold,
            training_seconds=info.training_seconds,
        )

    def _notification_service(self) -> NotificationService:
        if self._notifications is None:
            raise Unimplemented("no notification delivery in this server")
        return self._notifications

    async def ListNotifications(
        self, request: service_pb2.ListNotificationsRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ListNotificationsResponse:
        rows, token, destinations = await self._blocking(
            self._notification_service().page,
            request.destination,
            conv.notification_status(request.status),
            request.page_size,
            request.page_token,
        )
        reply = service_pb2.ListNotificationsResponse(next_page_token=token)
        for n in rows:
            conv.notification_to_pb(n, reply.notifications.add())
        for d in destinations:
            conv.destination_to_pb(d, reply.destinations.add())
        return reply

    async def RetryNotifications(
        self, request: service_pb2.RetryNotificationsRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.RetryNotificationsResponse:
        retried = await self._blocking(
            self._notification_service().retry, request.destination, list(request.message_ids)
        )
        return service_pb2.RetryNotificationsResponse(retried=retried)

    async def SendTestNotification(
        self, request: service_pb2.SendTestNotificationRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.SendTestNotificationResponse:
        notification = await self._blocking(
            self._notification_service().send_test, request.destination, request.text
        )
        reply = service_pb2.SendTestNotificationResponse()
        conv.notification_to_pb(notification, reply.notification)
        return reply

    async def ListAuditEvents(
        self, request: service_pb2.ListAuditEventsRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ListAuditEventsResponse:
        if self._audit_trail is None:
            raise Unimplemented("no audit trail in this server")
        events, token = await self._blocking(
            self._audit_trail.page,
            request.actor,
            request.action,
            request.page_size,
            request.page_token,
        )
        reply = service_pb2.ListAuditEventsResponse(next_page_token=token)
        for e in events:
            m = reply.audit_events.add(
                seq=e.seq,
                actor=e.actor,
                key_id=e.key_id,
                action=e.action,
                target=e.target,
                peer=e.peer,
                outcome=e.outcome,
                detail=e.detail,
            )
            conv.set_timestamp(m.occurred_at, e.occurred_at)
        return reply

    async def GetUserBaseline(
        self, request: service_pb2.GetUserBaselineRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.GetUserBaselineResponse:
        baseline = await self._blocking(self._investigation.baseline, request.user_id)
        return service_pb2.GetUserBaselineResponse(baseline=conv.baseline_to_pb(baseline))


def principal(context: grpc.aio.ServicerContext) -> str:
    """Who is calling, for the audit fields of the alert workflow: the API
    key's name the auth interceptor set for this call ("anonymous" when keys
    are off)."""
    return current_principal.get()
