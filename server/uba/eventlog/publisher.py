"""The front end's EventSink: publishes each valid event to its user's
partition, and a copy to each population partition its population keys
fall in (the source address, the organisation: `population`), and answers
once JetStream has stored them all.

nats-py is asyncio, like grpc.aio: publishes run on the server's event
loop. `submit` keeps the port's contract (a concurrent Future, as the
writer thread resolves it) so that the servicer and its LoopBridge stay as
they are; the publish task resolves that Future on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from datetime import datetime
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from uba.api.bridge import running_on
from uba.domain.erasure import ErasureRequest
from uba.domain.errors import DomainError, ResourceExhausted, Unavailable
from uba.domain.events import ActivityEvent, RecordOutcome, RecordStatus
from uba.eventlog import layout

log = logging.getLogger(__name__)
T = TypeVar("T")
# Seconds a starting process waits for the log to answer (an election on a
# cluster takes seconds: docs/scaling.md) before it gives up.
SETUP_PATIENCE = 60.0


async def ensure_stream(
    js, limits: layout.StreamLimits, lane: layout.Lane = layout.EVENTS, partitions: int = 0
) -> layout.StreamShape:
    """Creates the lane's stream with `limits` (and `partitions`, if given,
    instead of theirs) unless it exists; returns the partitions and
    replicas the stream was created with."""
    try:
        info = await js.stream_info(lane.stream)
    except nats.js.errors.NotFoundError:
        config = StreamConfig(
            name=lane.stream,
            description=lane.describe(partitions or limits.partitions),
            subjects=[f"{lane.subject_prefix}.*"],
            # A message leaves the stream once its worker acknowledged it:
            # the limits bound what the workers have not stored yet.
            retention=RetentionPolicy.WORK_QUEUE,
            discard=DiscardPolicy.NEW,
            max_msgs=limits.max_msgs,
            max_bytes=limits.max_bytes,
            storage=StorageType.FILE,
            duplicate_window=limits.duplicate_window,
            num_replicas=limits.replicas,
        )
        try:
            info = await js.add_stream(config)
        except nats.js.errors.APIError as exc:
            try:  # another process may have created it first
                info = await js.stream_info(lane.stream)
            except nats.js.errors.NotFoundError:
                raise layout.refused(exc, limits.replicas) from None
    shape = layout.StreamShape(
        partitions=layout.partitions_in(info.config.description, lane.stream),
        replicas=info.config.num_replicas or 1,
    )
    if shape.replicas != limits.replicas:
        log.warning(
            "stream %s has %d replicas, not the %d of --event-log-replicas: the setting "
            "applies when the stream is created",
            lane.stream,
            shape.replicas,
            limits.replicas,
        )
    return shape


async def patiently(
    step: Callable[[], Awaitable[T]], what: str, patience: float = SETUP_PATIENCE
) -> T:
    """Runs `step` until it succeeds, for up to `patience` seconds: on a
    cluster, a JetStream request times out or finds no responder while a
    leader is being elected (a node just died). Refusals fail at once."""
    give_up = time.monotonic() + patience
    while True:
        try:
            return await step()
        except layout.EventLogRefused:
            raise
        except (nats.errors.Error, TimeoutError) as exc:
            if time.monotonic() >= give_up:
                raise
            log.warning("%s is not ready (%r); trying again", what, exc)
            await asyncio.sleep(1.0)


def _retrieve(future: asyncio.Future) -> None:
    """Marks the outcome of an abandoned future as seen (no asyncio warning)."""
    if not future.cancelled():
        future.exception()


class NatsEventSink:
    """EventSink of a front end. `start()` on the loop before serving."""

    def __init__(
        self,
        url: str,
        limits: layout.StreamLimits,
        clock: Callable[[], datetime],
        timeout: float = 5.0,
        retry_after: float = 1.0,
        population: Callable[[ActivityEvent], set[str]] | None = None,
    ):
        """`population(event)`: the keys population detectors count the
        event under (the detection engine's `population_keys`)."""
        self._servers = layout.servers(url)
        self.population = population
        self._limits = limits
        self._clock = clock
        self._timeout = timeout
        self._retry_after = retry_after
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._tasks: set[asyncio.Task] = set()
        # Done when the current connection drops: the publishes in flight on
        # it will get no answer (replies went to the dead server). One
        # future per connection that every publish waits on, rather than a
        # waiting task per call.
        self._connection_lost: asyncio.Future | None = None
        self.partitions = 0
        self.population_partitions = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._connection_lost = self._loop.create_future()
        self._nc = await nats.connect(
            self._servers,
            name="uba-frontend",
            connect_timeout=5,
            max_reconnect_attempts=-1,  # keep trying; calls answer UNAVAILABLE meanwhile
            reconnect_time_wait=0.5,
            disconnected_cb=self._disconnected,
            reconnected_cb=self._reconnected,
            error_cb=layout.error_logger(log, "event log"),
        )
        self._js = self._nc.jetstream(timeout=self._timeout)
        js = self._js
        shape = await patiently(lambda: ensure_stream(js, self._limits), "the event log")
        self.partitions = shape.partitions
        if self.population is not None:
            n = self.partitions
            population = await patiently(
                lambda: ensure_stream(js, self._limits, layout.POPULATION, n), "the event log"
            )
            self.population_partitions = population.partitions
        log.info(
            "event log: publishing to stream %s (%d partitions, %d replicas) on %s",
            layout.STREAM,
            self.partitions,
            shape.replicas,
            ",".join(self._servers),
        )

    async def _disconnected(self) -> None:
        if self._connection_lost is not None and not self._connection_lost.done():
            self._connection_lost.set_result(None)

    async def _reconnected(self) -> None:
        if self._connection_lost is None or self._connection_lost.done():
            self._connection_lost = asyncio.get_running_loop().create_future()
        url = self._nc.connected_url if self._nc else None
        log.info("event log: connected to %s", url.netloc if url else "?")

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._nc is not None:
            await self._nc.drain()

    def submit(self, events: list[ActivityEvent]) -> Future:
        if self._loop is None or self._nc is None:
            raise Unavailable("event log not started")
        if not self._nc.is_connected:
            # Fail fast: a publish would sit in the reconnect buffer until
            # its timeout, and the caller can try another front end now.
            raise Unavailable(
                "event log unreachable; retry with the same event_id",
                retry_after=self._retry_after,
            )
        future: Future = Future()
        self._start(self._publish_all(events, future))
        return future

    def erase(self, request: ErasureRequest) -> Future:
        """Publishes the erasure behind what was published of the user: in
        the user's partition, and in every population partition (any may
        hold the user's copies). Resolves to the number of partitions once
        JetStream stored it in all (the port uba.domain.erasure.ErasureLog)."""
        if self._loop is None or self._nc is None:
            raise Unavailable("event log not started")
        if not self._nc.is_connected:
            raise Unavailable(
                "event log unreachable; retry the erasure", retry_after=self._retry_after
            )
        future: Future = Future()
        self._start(self._publish_erasure(request, future))
        return future

    async def _publish_erasure(self, request: ErasureRequest, future: Future) -> None:
        js = self._js
        assert js is not None
        data = layout.encode_erasure(request)
        places = [(layout.EVENTS, layout.partition_of(request.user_id, self.partitions))]
        if self.population is not None:
            places += [(layout.POPULATION, q) for q in range(self.population_partitions)]
        results = await asyncio.gather(
            *(
                js.publish(
                    lane.subject(partition),
                    data,
                    headers={
                        layout.CONTROL_HEADER: layout.ERASE,
                        # A retry of this publish is dropped as a duplicate.
                        "Nats-Msg-Id": layout.erasure_msg_id(request.erasure_id, lane, partition),
                    },
                    stream=lane.stream,
                )
                for lane, partition in places
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                future.set_exception(self._domain_error(result))
                return
        future.set_result(len(places))

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        """Runs a publish on the loop: a task from the loop's own thread (the
        servicer), handed over from any other (the storage threads, an
        importer, a test)."""
        assert self._loop is not None
        if running_on(self._loop):
            task = self._loop.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _publish_all(self, events: list[ActivityEvent], future: Future) -> None:
        # Concurrently: JetStream answers each publish, and the acks of a
        # batch overlap instead of costing one round trip each. One gather
        # of every publish of every event (not one per event): a task less
        # per event, which is what a unary call costs most here.
        calls: list[Awaitable] = []
        owner: list[int] = []
        for i, event in enumerate(events):
            for call in self._publishes(event):
                calls.append(call)
                owner.append(i)
        gathered = asyncio.gather(*calls, return_exceptions=True)
        lost = self._connection_lost
        assert lost is not None
        await asyncio.wait((gathered, lost), return_when=asyncio.FIRST_COMPLETED)
        if not gathered.done():
            # The server we published through died: answer now rather than
            # at the timeout. Some events may be in the log; a retry with
            # the same ids completes the batch (those answer DUPLICATE).
            gathered.cancel()
            gathered.add_done_callback(_retrieve)
            future.set_exception(
                Unavailable(
                    "lost the connection to the event log while publishing; retry with the "
                    "same event_id",
                    retry_after=self._retry_after,
                )
            )
            return
        # Each event's answer is its user partition's PubAck (its first
        # publish), once its population copies are stored too: any failure
        # fails the call, and the retry with the same event_id completes
        # what is missing (what is there answers duplicate).
        acks: list = [None] * len(events)
        for i, result in zip(owner, gathered.result(), strict=True):
            if isinstance(result, BaseException):
                future.set_exception(self._domain_error(result))
                return
            if acks[i] is None:
                acks[i] = result
        now = self._clock()
        future.set_result(
            [
                RecordOutcome(
                    event.event_id,
                    RecordStatus.DUPLICATE if ack.duplicate else RecordStatus.ACCEPTED,
                    now,
                )
                for event, ack in zip(events, acks, strict=True)
            ]
        )

    def _publishes(self, event: ActivityEvent) -> list[Awaitable]:
        """The event's publishes: its user partition first, then a copy to
        each population partition its population keys fall in."""
        js = self._js
        assert js is not None
        partition = layout.partition_of(event.user_id, self.partitions)
        data = layout.encode(event)
        publishes: list[Awaitable] = [
            js.publish(
                layout.subject(partition),
                data,
                # JetStream drops a second message with this id inside its
                # duplicate window and answers duplicate=True.
                headers={"Nats-Msg-Id": event.event_id},
                stream=layout.STREAM,
            )
        ]
        if self.population is not None:
            n = self.population_partitions
            for p in sorted({layout.partition_of(k, n) for k in self.population(event)}):
                publishes.append(
                    js.publish(
                        layout.POPULATION.subject(p),
                        data,
                        headers={"Nats-Msg-Id": layout.population_msg_id(event.event_id, p)},
                        stream=layout.POPULATION_STREAM,
                    )
                )
        return publishes

    def _domain_error(self, exc: BaseException) -> DomainError:
        if isinstance(exc, DomainError):
            return exc
        if isinstance(exc, nats.js.errors.APIError) and exc.err_code == layout.STREAM_FULL_ERR_CODE:
            return ResourceExhausted(
                f"event log is full ({exc.description}); retry with the same event_id",
                retry_after=self._retry_after,
            )
        if isinstance(exc, nats.errors.TimeoutError | asyncio.TimeoutError):
            return ResourceExhausted(
                "event log did not acknowledge in time; retry with the same event_id",
                retry_after=self._retry_after,
            )
        if isinstance(exc, nats.js.errors.NoStreamResponseError):
            # No server takes the stream's subjects: on a cluster, while its
            # replicas elect a new leader (seconds; docs/scaling.md).
            return Unavailable(
                "event log has no stream leader (election under way); retry with the same event_id",
                retry_after=self._retry_after,
            )
        log.warning("publishing to the event log failed: %r", exc)
        return Unavailable(
            f"event log unavailable: {type(exc).__name__}; retry with the same event_id",
            retry_after=self._retry_after,
        )
