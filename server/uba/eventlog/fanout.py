"""Alert and incident changes fanned out to every front end (issue #22).

Each process that commits changes (workers; front ends, for the analyst's
workflow) publishes every change, with its seq, on the core NATS subject
`uba.changes` once its transaction has committed. Every front end
subscribes and hands what arrives to its alert broker (`AlertBroker.learned`),
so that StreamAlerts subscribers of any front end get the changes of all
processes at once, without polling PostgreSQL.

Core NATS, not a JetStream stream: delivery at most once is enough here,
because storage stays the source of truth and the sequence has no holes.
A broker that sees a seq beyond the next one reads storage (a lost message,
or another publisher's message still on its way), and one whose connection
came back or dropped messages (slow consumer) reads it at once; a resuming
subscriber reads storage by `after_seq` as before. A stream would cost a
disk write and an acknowledgement per change and still not spare that read
after a crash between commit and publish. What is left for the broker's
safety-net poll is a lost message after which nothing changes.

One message per change: a `StreamAlertsResponse` (the contract's envelope
of a seq and an alert or an incident). A change too large for NATS's
payload limit goes with its seq only; front ends read it from storage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import nats
import nats.errors
from nats.aio.client import Client as NatsClient

from uba.api import converters as conv
from uba.domain.alerts import Alert
from uba.domain.incidents import Incident
from uba.eventlog import layout
from uba.v1 import service_pb2

log = logging.getLogger(__name__)

SUBJECT = "uba.changes"
# Commits whose changes may wait for NATS (while it reconnects) before the
# newest are dropped: their subscribers find them in storage.
BACKLOG = 10_000
# Seconds between two warnings about failed publishes.
WARN_EVERY = 60.0


def encode(change: Alert | Incident) -> bytes:
    m = service_pb2.StreamAlertsResponse(seq=change.seq)
    if isinstance(change, Incident):
        conv.incident_to_pb(change, m.incident)
    else:
        conv.alert_to_pb(change, m.alert)
    return m.SerializeToString()


def encode_seq(seq: int) -> bytes:
    """A change named by its seq only: 'read it from storage'."""
    return service_pb2.StreamAlertsResponse(seq=seq).SerializeToString()


def decode(data: bytes) -> Alert | Incident | int:
    m = service_pb2.StreamAlertsResponse.FromString(data)
    kind = m.WhichOneof("kind")
    if kind == "alert":
        return conv.alert_from_pb(m.alert)
    if kind == "incident":
        return conv.incident_from_pb(m.incident)
    return m.seq


class ChangeFanout:
    """A process's NATS connection for changes: publishes those of its own
    commits (`publish_threadsafe`, from the writer thread) and, on a front
    end, feeds those of the other processes to `learned`."""

    def __init__(self, url: str, name: str, backlog: int = BACKLOG):
        self._servers = layout.servers(url)
        self._name = name
        self._queue: asyncio.Queue[list] = asyncio.Queue(maxsize=backlog)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: NatsClient | None = None
        self._sender: asyncio.Task | None = None
        self._learned: Callable[[Alert | Incident | int], None] | None = None
        self._catch_up: Callable[[], None] | None = None
        self._closing = False
        self._warned = 0.0
        self.published = 0
        self.dropped = 0

    @property
    def connection(self) -> NatsClient:
        if self._nc is None:
            raise RuntimeError("fan-out not started")
        return self._nc

    async def start(self) -> None:
        """Connects and starts publishing."""
        self._loop = asyncio.get_running_loop()
        self._nc = await nats.connect(
            self._servers,
            name=self._name,
            connect_timeout=5,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            # A front end's own changes reached its broker from its commit.
            no_echo=True,
            error_cb=self._error,
            disconnected_cb=self._disconnected,
            reconnected_cb=self._reconnected,
        )
        self._sender = asyncio.create_task(self._send(), name="uba-change-fanout")

    async def subscribe(
        self,
        learned: Callable[[Alert | Incident | int], None],
        catch_up: Callable[[], None],
    ) -> None:
        """A front end: feeds every change the other processes publish to
        `learned`, and calls `catch_up` whenever changes may have been
        missed, and once subscribed (for what was committed between the
        broker's start and now). Both run on this loop."""
        self._learned, self._catch_up = learned, catch_up
        await self.connection.subscribe(SUBJECT, cb=self._received)
        await self.connection.flush()
        self._missed()

    def publish_threadsafe(self, changes: object) -> None:
        """After a commit, on the writer thread: its alert and incident
        changes (what `IngestService.on_committed` gets)."""
        if not isinstance(changes, list) or not changes or self._loop is None or self._closing:
            return
        try:
            self._loop.call_soon_threadsafe(self._enqueue, changes)
        except RuntimeError:  # the loop is closed: stopping
            pass

    def _enqueue(self, changes: list) -> None:
        try:
            self._queue.put_nowait(changes)
        except asyncio.QueueFull:
            self.dropped += len(changes)
            self._warn("change fan-out backlog full: %d changes dropped so far", self.dropped)

    async def _send(self) -> None:
        assert self._nc is not None
        while True:
            changes = await self._queue.get()
            try:
                for change in changes:
                    if not isinstance(change, Alert | Incident) or not change.seq:
                        continue
                    data = encode(change)
                    if len(data) > self._nc.max_payload:
                        data = encode_seq(change.seq)
                    try:
                        await self._nc.publish(SUBJECT, data)
                        self.published += 1
                    except nats.errors.Error as exc:  # reconnect buffer full, closed
                        self.dropped += 1
                        self._warn("publishing a change failed: %r (%d dropped)", exc, self.dropped)
            finally:
                self._queue.task_done()

    async def _received(self, msg) -> None:
        try:
            change = decode(msg.data)
        except Exception:  # noqa: BLE001 - unreadable: whatever it was, storage has it
            log.warning("an unreadable change message on %s; reading storage", SUBJECT)
            self._missed()
            return
        if self._learned is not None:
            self._learned(change)

    def _missed(self) -> None:
        if self._catch_up is not None:
            self._catch_up()

    async def _error(self, exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError):
            self._missed()  # messages were dropped for us
        self._warn("change fan-out: %r", exc)

    async def _disconnected(self) -> None:
        if not self._closing:
            log.warning("change fan-out: disconnected from NATS; reconnecting")

    async def _reconnected(self) -> None:
        log.info("change fan-out: reconnected to NATS")
        self._missed()

    def _warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            log.warning(message, *args)

    async def close(self, timeout: float = 5.0) -> None:
        """Sends what is queued (for up to `timeout`), then disconnects."""
        self._closing = True
        if self._sender is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout)
            except TimeoutError:
                log.warning("change fan-out: %d commits not published", self._queue.qsize())
            self._sender.cancel()
        if self._nc is not None and not self._nc.is_closed:
            try:
                await self._nc.drain()
            except (nats.errors.Error, TimeoutError):
                pass
