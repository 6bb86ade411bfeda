"""Python client of the uba service (uba.v1.BehaviorAnalyticsService).

from uba_client import UbaClient, event

with UbaClient("127.0.0.1:50051") as client:
    client.record(event("alice", "login_success", source_ip="10.0.0.7"))
    for alert in client.follow_alerts(min_severity="high"):
        print(alert.seq, alert.user_id, alert.title)
"""

from uba_client.alerts import AlertFollower
from uba_client.batch import BatchRecorder, RecorderStats
from uba_client.client import MAX_BATCH, BatchResult, RecordResult, UbaClient
from uba_client.errors import UbaError
from uba_client.events import event
from uba_client.ids import new_event_id
from uba_client.retry import RetryPolicy

__all__ = [
    "AlertFollower",
    "BatchRecorder",
    "BatchResult",
    "MAX_BATCH",
    "RecordResult",
    "RecorderStats",
    "RetryPolicy",
    "UbaClient",
    "UbaError",
    "event",
    "new_event_id",
]
