"""Building request messages for tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from uba.v1 import events_pb2

LOGIN = events_pb2.ACTIVITY_TYPE_LOGIN_SUCCESS
FAILURE = events_pb2.ACTIVITY_TYPE_LOGIN_FAILURE
LOGOUT = events_pb2.ACTIVITY_TYPE_LOGOUT
API_CALL = events_pb2.ACTIVITY_TYPE_API_CALL


def unique(prefix: str = "u") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def event(
    user_id: str, type_: int = LOGIN, at: datetime | None = None, **fields
) -> events_pb2.ActivityEvent:
    """A valid event; `at` defaults to a minute ago."""
    m = events_pb2.ActivityEvent(user_id=user_id, type=type_, **fields)
    m.occurred_at.FromDatetime(at or datetime.now(UTC) - timedelta(minutes=1))
    return m


def stored_events(stub, user_id: str, **call_options) -> list[events_pb2.ActivityEvent]:
    """Every stored event of a user, newest first, through ListLogs paging."""
    from uba.v1 import service_pb2

    events, token = [], ""
    while True:
        page = stub.ListLogs(
            service_pb2.ListLogsRequest(user_id=user_id, page_size=1000, page_token=token),
            **call_options,
        )
        events.extend(page.events)
        token = page.next_page_token
        if not token:
            return events
