"""Following StreamAlerts across disconnects and server restarts.

Each stream message carries `seq`, the latest alert change the subscriber
has been brought up to (heartbeats too). The follower remembers the highest
`seq` it has seen and reconnects with it as `after_seq`; the server replays
every stored change after it, then continues live. So no change is missed,
and none is yielded twice (a replayed change with a `seq` already seen is
dropped here as well, in case a server replays generously).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import grpc

from uba.v1 import alerts_pb2, anomalies_pb2, service_pb2
from uba_client import events as ev
from uba_client.errors import UbaError
from uba_client.retry import RetryPolicy

if TYPE_CHECKING:
    from uba_client.client import UbaClient

# Worth reconnecting after: the server went away, restarted, drained, or
# the stream broke. Anything else (bad filter, no permission, not
# implemented) would fail again the same way.
RECONNECT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
# Keep trying for ever, at most every 5 s: a follower is a daemon's loop.
FOLLOW_POLICY = RetryPolicy(max_attempts=0, initial_backoff=0.2, max_backoff=5.0)


class AlertFollower:
    """Iterate to get alerts (uba.v1.Alert) as they are created or change.

    `seq` is the resume point: persist it and pass it as `after_seq` next
    time to continue where this follower stopped. With after_seq=0 the
    follower starts at the newest stored change (asked with ListAlerts), so
    it also resumes without a gap when it has to reconnect before the first
    message. close() (from any thread) ends the iteration.
    """

    def __init__(
        self,
        client: UbaClient,
        after_seq: int = 0,
        min_severity: Any = None,
        user_id: str = "",
        detector: str = "",
        idle_timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        kinds: tuple[str, ...] = ("alert",),
    ):
        self.client = client
        # What to yield: "alert" (uba.v1.Alert) and/or "incident" (uba.v1.Incident).
        self.kinds = frozenset(kinds)
        self.seq = int(after_seq)
        self.min_severity = (
            ev.severity(min_severity) if min_severity else anomalies_pb2.SEVERITY_UNSPECIFIED
        )
        self.user_id = user_id
        self.detector = detector
        # No message (not even a heartbeat) for this long means a dead
        # connection that TCP has not noticed: reconnect.
        self.idle_timeout = idle_timeout
        self.retry = retry or FOLLOW_POLICY
        self.reconnects = 0
        self._closed = threading.Event()
        self._call: grpc.Future | None = None
        self._last_message = time.monotonic()
        self._stalled = False
        self._started = False

    def close(self) -> None:
        self._closed.set()
        if self._call is not None:
            self._call.cancel()

    def __enter__(self) -> AlertFollower:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start_seq(self) -> None:
        """Pins 'from now' to a seq, so a reconnect before the first message
        still replays what happened in between."""
        if self.seq:
            return
        try:
            page = self.client.list_alerts(page_size=1)
        except UbaError:
            return  # best effort: an empty or unreachable server starts at 0
        if page.alerts:
            self.seq = page.alerts[0].seq
        if "incident" in self.kinds:  # incidents share the sequence
            try:
                incidents = self.client.list_incidents(page_size=1).incidents
            except UbaError:
                return
            if incidents:
                self.seq = max(self.seq, incidents[0].seq)

    def _watchdog(self, call) -> None:
        while not self._closed.is_set() and not call.done():
            if time.monotonic() - self._last_message > self.idle_timeout:
                self._stalled = True
                call.cancel()
                return
            self._closed.wait(min(1.0, self.idle_timeout / 4))

    def __iter__(self) -> Iterator[alerts_pb2.Alert]:
        if not self._started:
            self._started = True
            self._start_seq()
        failures = 0
        while not self._closed.is_set():
            request = service_pb2.StreamAlertsRequest(
                after_seq=self.seq,
                min_severity=self.min_severity,
                user_id=self.user_id,
                detector=self.detector,
                include_incidents="incident" in self.kinds,
            )
            call = self.client.stub.StreamAlerts(request, metadata=self.client.metadata)
            self._call = call
            self._stalled = False
            self._last_message = time.monotonic()
            threading.Thread(
                target=self._watchdog, args=(call,), daemon=True, name="uba-follow-watchdog"
            ).start()
            try:
                for message in call:
                    self._last_message = time.monotonic()
                    failures = 0
                    kind = message.WhichOneof("kind")
                    if kind in ("alert", "incident") and kind in self.kinds:
                        item = getattr(message, kind)
                        seq = message.seq or item.seq
                        if seq <= self.seq:
                            continue  # already yielded before a reconnect
                        self.seq = seq
                        yield item
                    else:
                        self.seq = max(self.seq, message.seq)
                # The server ended the stream (e.g. shutting down): resume.
            except grpc.RpcError as err:
                if self._closed.is_set():
                    return
                code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
                if not (
                    code in RECONNECT_CODES or (code == grpc.StatusCode.CANCELLED and self._stalled)
                ):
                    raise UbaError.from_rpc(err, self.client.target) from None
                failures += 1
                error = UbaError.from_rpc(err, self.client.target)
                if self.retry.gives_up_after(failures):
                    raise error from None
                # A slow subscriber cut off with RESOURCE_EXHAUSTED is told how long to wait.
                hint = error.retry_delay or 0.0
            else:
                hint = 0.0
            finally:
                call.cancel()
            if self._closed.is_set():
                return
            self.reconnects += 1
            self._closed.wait(max(hint, self.retry.backoff(max(failures, 1))))
