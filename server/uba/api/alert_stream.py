"""StreamAlerts without gaps or duplicates.

A subscriber first registers with the broker (from then on every newly
delivered alert lands in its queue), then replays from storage every alert
change between its `after_seq` and the broker's position at registration,
then continues from the queue. The two ranges meet exactly at that
position; anything seen twice around the hand-over is dropped by seq.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from datetime import UTC, datetime

from uba.api.broker import CLOSED, OVERFLOW, AlertBroker, AlertSubscriptionFilter
from uba.domain.alerts import Alert
from uba.domain.errors import ResourceExhausted, Unavailable
from uba.domain.incidents import Incident

REPLAY_BATCH = 500


class AlertStream:
    def __init__(
        self,
        broker: AlertBroker,
        read_after: Callable[[int, int], list[Alert | Incident]],
        executor: Executor,
        heartbeat_interval: float,
    ):
        self._broker = broker
        self._read_after = read_after
        self._executor = executor
        self._heartbeat = heartbeat_interval

    async def follow(
        self, flt: AlertSubscriptionFilter, after_seq: int
    ) -> AsyncIterator[tuple[str, Alert | Incident | datetime, int]]:
        """Yields ("alert", Alert, seq), ("incident", Incident, seq) and
        ("heartbeat", time, seq); `seq` is where the subscriber may resume
        from."""
        loop = asyncio.get_running_loop()
        sub = self._broker.subscribe(flt)
        try:
            last = after_seq
            while after_seq and last < sub.start_seq:
                batch = await loop.run_in_executor(
                    self._executor, self._read_after, last, REPLAY_BATCH
                )
                for alert in batch:
                    if alert.seq > sub.start_seq:
                        break
                    last = alert.seq
                    if flt.matches(alert):
                        yield _kind(alert), alert, alert.seq
                if len(batch) < REPLAY_BATCH:
                    break
            # Live from here. Everything up to start_seq has been replayed
            # (or, without after_seq, was not asked for). A heartbeat at once
            # tells the subscriber (and any proxy) the stream is up.
            last = max(last, sub.start_seq)
            yield "heartbeat", datetime.now(UTC), last
            while True:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), self._heartbeat)
                except TimeoutError:
                    yield "heartbeat", datetime.now(UTC), last
                    continue
                if item is OVERFLOW:
                    raise ResourceExhausted(
                        "subscriber too slow: more than the allowed backlog of alerts "
                        f"waiting; resume with after_seq={last}",
                        retry_after=1.0,
                    )
                if item is CLOSED:
                    raise Unavailable(f"server is shutting down; resume with after_seq={last}")
                if item.seq <= last:
                    continue
                last = item.seq
                yield _kind(item), item, last
        finally:
            self._broker.unsubscribe(sub)


def _kind(item: Alert | Incident) -> str:
    return "incident" if isinstance(item, Incident) else "alert"
