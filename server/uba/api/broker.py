"""The alert broker: fans committed alert changes out to StreamAlerts
subscribers, in seq order, from the database. Incident changes share the
alerts' sequence and travel the same way.

The database is the source of truth: whenever this process commits alerts
it pokes the broker, and every `poll_interval` the broker also looks on its
own (alerts committed by other server processes on the same PostgreSQL). It
then reads every alert with a seq above the last one it delivered and
offers each, in order, to every subscription. Seq numbers are assigned under
a row lock held until commit, so a committed seq never appears below one
already delivered.

The usual case skips the read: when the alerts a commit of this process
hands over continue the delivered seqs without a gap, they are exactly what
the read would return, and they are offered at once. Reading them back
would cost a database round trip on an executor thread, and under heavy
ingest that thread waits for the interpreter lock behind the writer and
the event loop (docs/benchmarks.md has the latencies). Any gap (another process's alerts)
falls back to the read.

A front end of the event log learns the same way of the changes the
workers and the other front ends commit, as they publish them after their
commit (`learned`, uba.eventlog.fanout): the next seq is offered at once,
anything else is read from storage. Its polling is then a safety net at a
long interval (docs/scaling.md).

Each subscription has a bounded queue: a subscriber that stops reading is
cut off with a clear status once its backlog is full, instead of growing
server memory. The cut-off drops the backlog at once: a stream whose peer
has stopped reading waits in gRPC's write for as long as the peer does, so
the backlog would otherwise stay in memory until the peer reads it all,
and only then would the subscriber learn that it had been cut off. It
resumes from storage instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import cast

from uba.domain.alerts import Alert
from uba.domain.incidents import Incident

log = logging.getLogger(__name__)

READ_BATCH = 500


@dataclass(frozen=True, slots=True)
class AlertSubscriptionFilter:
    min_severity: int = 0
    user_id: str = ""
    detector: str = ""
    # Incident changes only for subscribers that asked for them.
    include_incidents: bool = False

    def matches(self, alert: Alert | Incident) -> bool:
        if isinstance(alert, Incident):  # its users and detectors are those of its members
            return (
                self.include_incidents
                and int(alert.severity) >= self.min_severity
                and (not self.user_id or self.user_id in alert.user_ids)
                and (not self.detector or self.detector in alert.detectors)
            )
        return (
            int(alert.severity) >= self.min_severity
            and (not self.user_id or alert.user_id == self.user_id)
            and (not self.detector or alert.detector == self.detector)
        )


# Queue markers besides alerts.
OVERFLOW = object()
CLOSED = object()


class Subscription:
    def __init__(self, flt: AlertSubscriptionFilter, start_seq: int, backlog: int):
        self.filter = flt
        # Everything up to here is in storage; later changes come through the queue.
        self.start_seq = start_seq
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=backlog + 1)
        self._backlog = backlog
        self.dead = False

    def offer(self, item: object) -> None:
        if self.dead:
            return
        if item is CLOSED or item is OVERFLOW:
            self.dead = True
            if item is OVERFLOW:
                # It resumes from storage after the last seq it was given:
                # what it has not taken is no longer needed.
                while not self.queue.empty():
                    self.queue.get_nowait()
                log.warning(
                    "alert subscriber cut off: more than %d alert changes waiting; "
                    "its backlog is dropped and it resumes from storage",
                    self._backlog,
                )
            try:
                self.queue.put_nowait(item)
            except asyncio.QueueFull:  # the reserved last slot was used; make room
                self.queue.get_nowait()
                self.queue.put_nowait(item)
            return
        # Past the markers, an item is an alert or an incident.
        if not self.filter.matches(cast("Alert | Incident", item)):
            return
        if self.queue.qsize() >= self._backlog:
            self.offer(OVERFLOW)
        else:
            self.queue.put_nowait(item)


class AlertBroker:
    def __init__(
        self,
        read_after: Callable[[int, int], list[Alert | Incident]],
        max_seq: Callable[[], int],
        executor: Executor,
        poll_interval: float = 1.0,
        backlog: int = 10_000,
    ):
        self._read_after = read_after
        self._max_seq = max_seq
        self._executor = executor
        self._poll_interval = poll_interval
        self._backlog = backlog
        self._subscriptions: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task | None = None
        self.delivered_seq = 0

    async def start(self) -> None:
        self.delivered_seq = await self._loop.run_in_executor(self._executor, self._max_seq)
        self._task = asyncio.create_task(self._run(), name="uba-alert-broker")

    def poke_threadsafe(self, changed: object = None) -> None:
        """Called from the writer thread after a commit that changed alerts,
        with what the commit returned (the alerts, in seq order); the writer
        does not touch them again."""
        self._loop.call_soon_threadsafe(
            self._committed, changed if isinstance(changed, list) else []
        )

    def _committed(self, changed: list) -> None:
        follows = bool(changed) and all(
            isinstance(item, (Alert, Incident)) and item.seq == self.delivered_seq + 1 + i
            for i, item in enumerate(changed)
        )
        if follows:
            self._offer(changed)
        else:
            self._wake.set()  # a gap, or not alerts: read what storage holds

    def learned(self, change: Alert | Incident | int) -> None:
        """A change another process committed, as the event log's fan-out
        brings it (uba.eventlog.fanout), on the loop; or only its seq when it
        came without its content. Offered at once when it is the next seq;
        dropped when already delivered; otherwise something came in between
        that this process has not seen (a lost message, another publisher's
        message still on its way) and storage is read, as for a gap here."""
        seq = change if isinstance(change, int) else change.seq
        if seq <= self.delivered_seq:
            return
        if not isinstance(change, int) and seq == self.delivered_seq + 1:
            self._offer([change])
        else:
            self._wake.set()

    def catch_up(self) -> None:
        """Reads storage now (on the loop): changes may have been missed,
        e.g. while the fan-out's connection was down."""
        self._wake.set()

    def subscribe(self, flt: AlertSubscriptionFilter) -> Subscription:
        sub = Subscription(flt, self.delivered_seq, self._backlog)
        self._subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    async def close(self) -> None:
        """Ends every subscription (they answer UNAVAILABLE: resume elsewhere)."""
        for sub in list(self._subscriptions):
            sub.offer(CLOSED)
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._deliver_new()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be down; try again at the next poll
                log.warning("reading new alerts failed", exc_info=True)

    async def _deliver_new(self) -> None:
        while True:
            alerts = await self._loop.run_in_executor(
                self._executor, self._read_after, self.delivered_seq, READ_BATCH
            )
            # Some may have been handed over by a commit during the read.
            self._offer([a for a in alerts if a.seq > self.delivered_seq])
            if len(alerts) < READ_BATCH:
                return

    def _offer(self, alerts: list[Alert | Incident]) -> None:
        for alert in alerts:
            for sub in list(self._subscriptions):
                sub.offer(alert)
                if sub.dead:
                    # Cut off: its stream ends when its peer reads again, or
                    # when its connection drops.
                    self._subscriptions.discard(sub)
            self.delivered_seq = alert.seq
