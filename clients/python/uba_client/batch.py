"""BatchRecorder: collects events from any number of threads and sends them
in batches, when a batch is full or when the oldest waiting event has
waited `flush_interval` seconds, whichever comes first."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from uba.v1 import events_pb2
from uba_client.client import MAX_BATCH, RecordResult
from uba_client.errors import UbaError
from uba_client.ids import new_event_id

if TYPE_CHECKING:
    from uba_client.client import UbaClient


@dataclass
class RecorderStats:
    """Running totals; 'failed' counts events whose batch could not be
    delivered even after the client's retries."""

    sent: int = 0
    accepted: int = 0
    duplicate: int = 0
    invalid: int = 0
    failed: int = 0
    batches: int = 0
    errors: list[str] = field(default_factory=list)


class BatchRecorder:
    """Thread-safe batching in front of UbaClient.record_batch.

        with BatchRecorder(client, on_result=print) as recorder:
            recorder.add(event)        # returns the event's id at once

    `on_result(result, event)` is called once per event, with its
    RecordResult ('accepted', 'duplicate', 'invalid' with violations, or
    'failed' with the error), from the thread that flushed. Batches are sent
    one at a time, in the order their events were added.
    """

    def __init__(
        self,
        client: UbaClient,
        max_batch: int = 500,
        flush_interval: float | None = 1.0,
        on_result: Callable[[RecordResult, events_pb2.ActivityEvent], None] | None = None,
    ):
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be within 1..{MAX_BATCH}")
        self.client = client
        self.max_batch = max_batch
        self.flush_interval = flush_interval
        self.on_result = on_result
        self.stats = RecorderStats()
        self._pending: list[events_pb2.ActivityEvent] = []
        self._oldest = 0.0  # monotonic time the oldest pending event was added
        self._lock = threading.Lock()  # guards _pending and stats
        self._send_lock = threading.Lock()  # one batch on the wire at a time, in order
        self._closed = threading.Event()
        self._timer: threading.Thread | None = None
        if flush_interval:
            self._timer = threading.Thread(target=self._tick, daemon=True, name="uba-batch-flush")
            self._timer.start()

    def add(self, event: events_pb2.ActivityEvent) -> str:
        """Queues a copy of the event; returns its id (assigned now when
        empty, so that retries resend the same id). Sends a batch from this
        thread when it is full, which slows a producer that outruns the
        server."""
        if self._closed.is_set():
            raise RuntimeError("BatchRecorder is closed")
        copy = events_pb2.ActivityEvent()
        copy.CopyFrom(event)
        if not copy.event_id:
            copy.event_id = new_event_id()
        with self._lock:
            if not self._pending:
                self._oldest = time.monotonic()
            self._pending.append(copy)
            full = len(self._pending) >= self.max_batch
        if full:
            self._send_next(only_full=True)
        return copy.event_id

    def flush(self) -> None:
        """Sends everything queued so far and waits for the replies."""
        while self._send_next():
            pass

    def close(self) -> None:
        """Flushes and stops the timer."""
        self._closed.set()
        if self._timer is not None:
            self._timer.join()
        self.flush()

    def __enter__(self) -> BatchRecorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _tick(self) -> None:
        assert self.flush_interval
        while not self._closed.wait(min(0.05, self.flush_interval / 4)):
            with self._lock:
                due = bool(self._pending) and time.monotonic() - self._oldest >= self.flush_interval
            if due:
                self.flush()

    def _send_next(self, only_full: bool = False) -> bool:
        """Sends the oldest pending batch; False when there was none. Taking
        the batch under the send lock keeps batches in the order added."""
        with self._send_lock:
            with self._lock:
                if not self._pending or (only_full and len(self._pending) < self.max_batch):
                    return False
                batch, self._pending = (
                    self._pending[: self.max_batch],
                    self._pending[self.max_batch :],
                )
                if self._pending:
                    self._oldest = time.monotonic()
            try:
                results = self.client.record_batch(batch, max_batch=self.max_batch).results
            except UbaError as exc:
                results = [
                    RecordResult(i, e.event_id, "failed", error=str(exc))
                    for i, e in enumerate(batch)
                ]
                with self._lock:
                    self.stats.errors.append(str(exc))
            with self._lock:
                self.stats.sent += len(batch)
                self.stats.batches += 1
                for r in results:
                    setattr(self.stats, r.status, getattr(self.stats, r.status, 0) + 1)
            if self.on_result is not None:
                for result, event in zip(results, batch, strict=False):
                    self.on_result(result, event)
        return True
