"""The gRPC servicer: each method converts the request, calls the domain,
converts the reply. Errors are mapped in uba.api.errors, not here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

from google.api import httpbody_pb2

from uba.api import converters as conv
from uba.api.bridge import LoopBridge
from uba.config import MAX_BATCH_SIZE
from uba.domain.dashboard import DashboardService
from uba.domain.errors import InvalidArgument, Unimplemented
from uba.domain.ingest import IngestService
from uba.domain.logs import LogService
from uba.v1 import service_pb2, service_pb2_grpc

T = TypeVar("T")
MAX_BATCH = MAX_BATCH_SIZE


class Capabilities:
    """What GetCapabilities reports; filled by the composition root."""

    def __init__(self, version: str, storage_backend: str, analytics_mode: str, detectors: list[dict]):
        self.version = version
        self.storage_backend = storage_backend
        self.analytics_mode = analytics_mode
        self.detectors = detectors


class BehaviorAnalyticsServicer(service_pb2_grpc.BehaviorAnalyticsServiceServicer):
    def __init__(self, ingest: IngestService, logs: LogService, dashboard: DashboardService,
                 capabilities: Capabilities, executor: Executor):
        self._ingest = ingest
        self._logs = logs
        self._dashboard = dashboard
        self._capabilities = capabilities
        self._executor = executor
        # Built inside the running server, so the loop is the server's.
        self._bridge = LoopBridge(asyncio.get_running_loop())

    async def _blocking(self, fn: Callable[..., T], *args) -> T:
        """Runs storage-bound work off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- ingest -------------------------------------------------------------

    async def RecordActivity(self, request, context):
        if not request.HasField("event"):
            raise InvalidArgument.single("event", "required")
        (outcome,) = await self._bridge.wait(self._ingest.record_one(conv.event_from_pb(request.event)))
        return conv.record_activity_response(outcome)

    async def RecordActivities(self, request, context):
        if len(request.events) > MAX_BATCH:
            raise InvalidArgument.single("events", f"{len(request.events)} events; at most {MAX_BATCH} per batch")
        events = [conv.event_from_pb(m) for m in request.events]
        prepared, stored = self._ingest.record_batch(events)
        outcomes = self._ingest.merge(prepared, await self._bridge.wait(stored) if stored else None)
        return conv.record_activities_response(outcomes)

    # -- the log ------------------------------------------------------------

    async def ListLogs(self, request, context):
        page = await self._blocking(self._logs.list, conv.event_filter(request), request.page_size, request.page_token)
        reply = service_pb2.ListLogsResponse(next_page_token=page.next_page_token)
        for event in page.events:
            conv.event_to_pb(event, reply.events.add())
        return reply

    async def ExportLogs(self, request, context):
        content_type, chunks = self._logs.export(conv.event_filter(request), request.format)
        sentinel = object()
        while True:
            # Each chunk may read a page from storage: keep that off the loop.
            chunk = await self._blocking(next, chunks, sentinel)
            if chunk is sentinel:
                return
            yield httpbody_pb2.HttpBody(content_type=content_type, data=chunk)

    async def GetDashboard(self, request, context):
        window = conv.to_timedelta(request.window) if request.HasField("window") else None
        return conv.dashboard_response(await self._blocking(self._dashboard.get, window))

    async def GetCapabilities(self, request, context):
        caps = self._capabilities
        reply = service_pb2.GetCapabilitiesResponse(
            version=caps.version,
            storage_backend=caps.storage_backend,
            analytics_mode=(service_pb2.ANALYTICS_MODE_ENHANCED if caps.analytics_mode == "enhanced"
                            else service_pb2.ANALYTICS_MODE_BASIC),
            max_batch_size=MAX_BATCH,
            export_formats=["csv", "json", "ndjson"],
        )
        for d in caps.detectors:
            reply.detectors.add(**d)
        return reply

    # -- arriving with the detection engine ---------------------------------

    async def ListAnomalies(self, request, context):
        raise Unimplemented("ListAnomalies is not built yet: it arrives with the detection engine")

    async def ListAlerts(self, request, context):
        raise Unimplemented("ListAlerts is not built yet: it arrives with the detection engine")

    async def StreamAlerts(self, request, context):
        raise Unimplemented("StreamAlerts is not built yet: it arrives with the detection engine")
        yield  # pragma: no cover - makes this an async generator

    async def AcknowledgeAlert(self, request, context):
        raise Unimplemented("AcknowledgeAlert is not built yet: it arrives with the detection engine")

    async def ResolveAlert(self, request, context):
        raise Unimplemented("ResolveAlert is not built yet: it arrives with the detection engine")

    async def GetUserBaseline(self, request, context):
        raise Unimplemented("GetUserBaseline is not built yet: it arrives with the detection engine")
