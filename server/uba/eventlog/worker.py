"""The worker's consumer loop: owns partitions (uba.eventlog.leases), pulls
batches from each owned partition's durable consumer, hands them to the
domain (uba.domain.partitions), and acknowledges the messages after it
committed them.

Partitions are of two lanes (layout.Lane): the users' events, which go to
the same writer the embedded mode uses (IngestService, whose GroupCommit
stores the events and runs the user detectors in one transaction), and the
population inputs, on which the owner runs the population detectors alone.
Each lane has its own leases, taken up to the same share per worker.

A crash between commit and ack means redelivery, which the writer answers
with DUPLICATE, and a population partition recognises as applied: nothing
is stored or learnt twice.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import secrets
import socket
import time

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, KeyValueConfig

from uba.domain.aggregates import AggregateExchange
from uba.domain.events import ActivityEvent
from uba.domain.partitions import PartitionWork
from uba.eventlog import layout
from uba.eventlog.aggregates import AggregateStream
from uba.eventlog.aggregates import ensure_stream as ensure_aggregates
from uba.eventlog.leases import Leases
from uba.eventlog.publisher import ensure_stream, patiently

log = logging.getLogger(__name__)

# Seconds a pull request waits at the server for messages; also how long a
# stopping consumer may take to hand back what it was sent.
PULL_EXPIRES = 1.0
# Seconds to wait for more messages once one arrived, before storing.
GATHER = 0.005
# Seconds before pulling again after a status that is not a plain expiry
# (503: the consumer has no leader during an election; 409s), or after NATS
# failed us: instead of asking again in a tight loop.
RETRY_PAUSE = 0.25
# Statuses that end a pull request normally: no messages, request expired.
_EXPIRED = ("404", "408")


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


async def lease_bucket(js, replicas: int = 1):
    try:
        return await js.key_value(layout.LEASE_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        config = KeyValueConfig(bucket=layout.LEASE_BUCKET, history=1, replicas=replicas)
        try:
            return await js.create_key_value(config)
        except nats.js.errors.APIError as exc:
            raise layout.refused(exc, replicas) from None


async def consumer_lag(js, partitions: int) -> dict[int, int]:
    """Per partition: messages not yet acknowledged by a worker (waiting
    plus delivered-but-unacknowledged)."""
    lag: dict[int, int] = {}
    for partition in range(partitions):
        try:
            info = await js.consumer_info(layout.STREAM, layout.durable(partition))
        except nats.js.errors.NotFoundError:
            continue
        lag[partition] = (info.num_pending or 0) + (info.num_ack_pending or 0)
    return lag


class EventLogWorker:
    def __init__(
        self,
        url: str,
        limits: layout.StreamLimits,
        users: PartitionWork,
        lease_seconds: float = 10.0,
        ack_wait: float = 30.0,
        batch: int = 500,
        owner: str = "",
        population: PartitionWork | None = None,
        aggregates: AggregateExchange | None = None,
    ):
        """`aggregates`: the user partitions' population aggregates, shared
        with the other workers through the log (uba.eventlog.aggregates)."""
        self._servers = layout.servers(url)
        self._limits = limits
        self._work: dict[layout.Lane, PartitionWork] = {layout.EVENTS: users}
        if population is not None:
            self._work[layout.POPULATION] = population
        self._lease_seconds = lease_seconds
        self._ack_wait = ack_wait
        self._batch = batch
        self.owner = owner or worker_id()
        self._aggregates = (
            AggregateStream(aggregates, self.owner) if aggregates is not None else None
        )
        self._js: JetStreamContext | None = None
        self._nc: NatsClient | None = None
        self._consumers: dict[tuple[layout.Lane, int], tuple[asyncio.Task, asyncio.Event]] = {}
        self.stored = 0  # events committed and acknowledged by this process

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        nc = await nats.connect(
            self._servers,
            name=f"uba-worker-{self.owner}",
            connect_timeout=5,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=layout.error_logger(log, "worker"),
        )
        self._nc = nc
        js = self._js = nc.jetstream(timeout=5.0)

        async def setup():
            shape = await ensure_stream(js, self._limits)
            # The lease bucket and the consumers get the stream's replicas:
            # what the stream survives, they survive.
            bucket = await lease_bucket(js, shape.replicas)
            lanes: dict[layout.Lane, int] = {}
            for lane in self._work:
                lane_shape = await ensure_stream(js, self._limits, lane, shape.partitions)
                await self._ensure_consumers(js, lane, lane_shape)
                lanes[lane] = lane_shape.partitions
            if self._aggregates is not None:
                await ensure_aggregates(js, self._limits, shape.replicas)
            return shape, bucket, lanes

        try:
            shape, bucket, lanes = await patiently(setup, "the event log")
            if self._aggregates is not None:
                # Everyone's aggregates before the first partition is taken.
                await patiently(functools.partial(self._aggregates.start, js), "the aggregates")
        except BaseException:
            await nc.close()
            raise
        all_leases: dict[layout.Lane, Leases] = {}
        for lane, n in lanes.items():
            all_leases[lane] = Leases(
                bucket, self.owner, n, self._lease_seconds, key=lane.lease_key
            )
            self._work[lane].start(functools.partial(layout.partition_of, partitions=n))
        leases = all_leases[layout.EVENTS]
        log.info(
            "worker %s: stream %s, %d partitions, %d replicas, lease %.1fs",
            self.owner,
            layout.STREAM,
            shape.partitions,
            shape.replicas,
            self._lease_seconds,
        )
        if ready is not None:
            ready.set()
        tick = self._lease_seconds / 3
        last_report = 0.0
        try:
            while not stop.is_set():
                try:
                    await self._round(all_leases)
                except (nats.errors.Error, TimeoutError) as exc:
                    log.warning("lease round failed: %r", exc)
                if time.monotonic() - last_report > 10:
                    last_report = time.monotonic()
                    try:  # bounded: renewals must not wait behind it
                        await asyncio.wait_for(self._report(js, leases), tick)
                    except TimeoutError:
                        log.info("worker %s: consumer lag not known now", self.owner)
                try:
                    await asyncio.wait_for(stop.wait(), tick)
                except TimeoutError:
                    pass
        finally:
            # Each partition's state is saved before its lease is given
            # back, so that the next owner loads it.
            await asyncio.gather(
                *(
                    self._stop_and_settle(lane, partition, partition in all_leases[lane].owned)
                    for lane, partition in list(self._consumers)
                )
            )
            if self._aggregates is not None:
                await self._aggregates.close()
            try:
                for lane, lane_leases in all_leases.items():
                    if lane is not layout.EVENTS:
                        for partition in sorted(lane_leases.owned):
                            await lane_leases.release(partition)
                await leases.leave()  # the events' leases and the membership
            except (nats.errors.Error, TimeoutError):
                log.warning("could not give back the leases; they expire on their own")
            await nc.drain()

    async def _round(self, all_leases: dict[layout.Lane, Leases]) -> None:
        members = all_leases[layout.EVENTS]
        try:
            await members.heartbeat()
        except (nats.errors.Error, TimeoutError) as exc:
            # The bucket may be electing a leader: still renew what we hold.
            log.warning("membership heartbeat failed: %r", exc)
        for leases in all_leases.values():
            leases.members = members.members
        await self._renew(all_leases)
        # What is over the share goes back, all at once: each waits for its
        # consumer to hand back what it was sent (about PULL_EXPIRES), and one
        # after another they outlasted short leases; the leases held
        # meanwhile are renewed again after.
        surplus = [(lane, p) for lane, leases in all_leases.items() for p in leases.surplus()]
        if surplus:
            await asyncio.gather(
                *(self._give_back(all_leases[lane], lane, p) for lane, p in surplus)
            )
            await self._renew(all_leases)
        for lane, leases in all_leases.items():
            gained = await leases.acquire()
            for partition in sorted(gained):
                self._start_consumer(lane, partition)
            if gained:
                log.info("owns %ss %s", lane.what, sorted(leases.owned))
            # A consumer that ended on its own (lost lease) is forgotten, and
            # what the domain held of its partition with it; one that failed
            # on a partition still held is started again.
            for (kind, partition), (task, _) in list(self._consumers.items()):
                if kind is not lane or not task.done():
                    continue
                del self._consumers[kind, partition]
                if partition in leases.owned:
                    failure = None if task.cancelled() else task.exception()
                    log.warning(
                        "%s %d: consumer ended (%r); restarting it", lane.what, partition, failure
                    )
                    self._start_consumer(lane, partition)
                else:
                    await self._settle(lane, partition, release=False)

    async def _renew(self, all_leases: dict[layout.Lane, Leases]) -> None:
        for lane, leases in all_leases.items():
            for partition in await leases.renew():
                # Lost: stop fetching at once; what is in flight is committed
                # idempotently whoever commits it.
                self._signal_stop(lane, partition)

    async def _give_back(self, leases: Leases, lane: layout.Lane, partition: int) -> None:
        await self._stop_and_settle(lane, partition, release=True)
        await leases.release(partition)
        log.info("gave back %s %d (share %d)", lane.what, partition, leases.target())

    async def _stop_and_settle(self, lane: layout.Lane, partition: int, release: bool) -> None:
        await self._stop_consumer(lane, partition)
        await self._settle(lane, partition, release)

    async def _settle(self, lane: layout.Lane, partition: int, release: bool) -> None:
        """Given back (`release`): the domain saves the partition's state for
        the next owner. Lost: it forgets it unsaved."""
        work = self._work[lane]
        try:
            future = work.release(partition) if release else work.drop(partition)
            await asyncio.wrap_future(future)
        except Exception as exc:  # noqa: BLE001 - losing it costs one window of detection
            log.warning("%s %d: saving its detector state failed: %r", lane.what, partition, exc)

    async def _report(self, js, leases: Leases) -> None:
        try:
            lag = await consumer_lag(js, leases.partitions)
        except (nats.errors.Error, TimeoutError):
            return
        mine = sum(lag.get(p, 0) for p in leases.owned)
        log.info(
            "worker %s: %d partitions owned, %d events stored, lag %d (all partitions %d)",
            self.owner,
            len(leases.owned),
            self.stored,
            mine,
            sum(lag.values()),
        )

    async def _ensure_consumers(self, js, lane: layout.Lane, shape: layout.StreamShape) -> None:
        for partition in range(shape.partitions):
            config = ConsumerConfig(
                durable_name=lane.durable(partition),
                filter_subject=lane.subject(partition),
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                # Messages of a worker that died unacknowledged come back
                # after this; it bounds the failover with the lease term.
                ack_wait=self._ack_wait,
                max_ack_pending=self._batch * 4,
                # Acknowledgements are replicated like the messages: a new
                # consumer leader knows what was acknowledged and redelivers
                # only the rest (acks sent to a dying leader included).
                num_replicas=shape.replicas,
            )
            # Looked up first: its leader answers that, while creating needs
            # the cluster's meta leader (a dead node may have been it).
            try:
                await js.consumer_info(lane.stream, config.durable_name)
                continue  # as created (maybe with other settings, by another worker)
            except nats.js.errors.NotFoundError:
                pass
            try:
                await js.add_consumer(lane.stream, config)
            except nats.js.errors.BadRequestError:
                pass  # another worker created it meanwhile

    def _start_consumer(self, lane: layout.Lane, partition: int) -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(self._consume(lane, partition, stopping))
        self._consumers[lane, partition] = (task, stopping)

    def _signal_stop(self, lane: layout.Lane, partition: int) -> None:
        entry = self._consumers.get((lane, partition))
        if entry is not None:
            entry[1].set()

    async def _stop_consumer(self, lane: layout.Lane, partition: int) -> None:
        entry = self._consumers.pop((lane, partition), None)
        if entry is None:
            return
        task, stopping = entry
        stopping.set()
        try:
            await asyncio.wait_for(task, self._ack_wait)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
        except Exception:  # noqa: BLE001 - already logged by the task
            pass

    async def _consume(self, lane: layout.Lane, partition: int, stopping: asyncio.Event) -> None:
        """Pulls with our own requests rather than nats-py's `fetch`: with
        short fetch timeouts its lingering pull requests outlived the call
        against nats-server 2.9 and messages sat unacknowledged until the
        ack wait ran out (reproduced under an idle-then-burst load). Here one
        inbox receives everything; any status (request expired, no messages,
        conflict) or silence ends the open request and the next is sent."""
        assert self._nc is not None
        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox)
        api = f"$JS.API.CONSUMER.MSG.NEXT.{lane.stream}.{lane.durable(partition)}"
        request = json.dumps(
            {"batch": self._batch, "expires": int(PULL_EXPIRES * 1_000_000_000)}
        ).encode()
        open_for = 0  # messages the open pull request may still deliver
        try:
            while not stopping.is_set():
                pause = 0.0
                try:
                    if open_for == 0:
                        await self._nc.publish(api, request, reply=inbox)
                        open_for = self._batch
                    msgs: list = []
                    wait = PULL_EXPIRES + 0.5
                    while open_for > 0 and len(msgs) < self._batch:
                        try:
                            msg = await sub.next_msg(timeout=wait)
                        except (nats.errors.TimeoutError, TimeoutError):
                            if wait > GATHER:  # silence: the request is gone
                                open_for = 0
                            break
                        status = msg.headers.get("Status") if msg.headers else None
                        if status:
                            if status != "100":  # not a heartbeat
                                open_for = 0
                                if status not in _EXPIRED:
                                    pause = RETRY_PAUSE
                            continue
                        msgs.append(msg)
                        open_for -= 1
                        wait = GATHER  # take what follows at once, then store
                    if msgs:
                        await self._store(lane, partition, msgs)
                except nats.errors.Error as exc:
                    # The connection is being re-established, or an ack could
                    # not be sent: what is unacknowledged comes back after the
                    # ack wait, and the writer answers it DUPLICATE.
                    log.warning("%s %d: pulling failed: %r", lane.what, partition, exc)
                    open_for, pause = 0, RETRY_PAUSE
                if pause:
                    await asyncio.sleep(pause)
            # Stopping: what the open request still delivers goes back now,
            # not after the ack wait.
            while open_for > 0:
                try:
                    msg = await sub.next_msg(timeout=PULL_EXPIRES + 0.5)
                except (nats.errors.TimeoutError, TimeoutError):
                    break
                if msg.headers and msg.headers.get("Status"):
                    if msg.headers["Status"] != "100":
                        break
                    continue
                await msg.nak()
        finally:
            try:
                await sub.unsubscribe()
            except nats.errors.Error:
                pass

    async def _store(self, lane: layout.Lane, partition: int, msgs: list) -> None:
        """The batch in the partition's order: each run of events is stored
        (and its messages acknowledged) before what follows it; a control
        message (an erasure) is applied in its place, once what came before
        it is committed and acknowledged. Whatever fails goes back, with
        everything after it."""
        run: list[tuple[object, ActivityEvent]] = []
        for i, msg in enumerate(msgs):
            kind = layout.control_of(msg)
            if not kind:
                try:
                    run.append((msg, layout.decode(msg.data)))
                except Exception:  # noqa: BLE001 - a message no worker can read
                    await self._drop(lane, partition, msg, "an undecodable message")
                continue
            if run and not await self._commit_run(lane, partition, run, msgs[i:]):
                return
            run = []
            if not await self._apply_control(lane, partition, kind, msg, msgs[i + 1 :]):
                return
        if run:
            await self._commit_run(lane, partition, run, [])

    async def _drop(self, lane: layout.Lane, partition: int, msg, what: str) -> None:
        log.error(
            "%s %d: dropping %s (seq %s)", lane.what, partition, what, msg.metadata.sequence.stream
        )
        await msg.term()

    async def _commit_run(self, lane: layout.Lane, partition: int, run: list, rest: list) -> bool:
        """Stores a run of events; True once committed and acknowledged."""
        msgs = [m for m, _ in run]
        events = [e for _, e in run]
        positions = [m.metadata.sequence.stream for m in msgs]
        try:
            await asyncio.wrap_future(self._work[lane].submit(partition, events, positions))
        except Exception as exc:  # noqa: BLE001 - storage down or the writer full: later
            log.warning(
                "%s %d: storing %d events failed: %s", lane.what, partition, len(events), exc
            )
            await self._put_back([*msgs, *rest])
            return False
        await self._acknowledge(lane, msgs)
        if lane is layout.EVENTS:
            self.stored += len(msgs)
        return True

    async def _apply_control(
        self, lane: layout.Lane, partition: int, kind: str, msg, rest: list
    ) -> bool:
        if kind != layout.ERASE:
            await self._drop(lane, partition, msg, f"a control message of unknown kind {kind!r}")
            return True
        try:
            request = layout.decode_erasure(msg.data)
        except (ValueError, KeyError, TypeError):
            await self._drop(lane, partition, msg, "an unreadable erasure")
            return True
        future = self._work[lane].erase(partition, request, msg.metadata.sequence.stream)
        try:
            report = await self._meanwhile_in_progress(future, [msg, *rest])
        except Exception as exc:  # noqa: BLE001 - storage down: later, in its place
            log.warning("%s %d: applying an erasure failed: %r", lane.what, partition, exc)
            await self._put_back([msg, *rest])
            return False
        log.info("%s %d: applied erasure %s (%s)", lane.what, partition, request.erasure_id, report)
        await self._acknowledge(lane, [msg])
        return True

    async def _meanwhile_in_progress(self, future, held: list):
        """Waits for `future`, telling JetStream now and then that the held
        messages are being worked on (an erasure of a user with much
        history may outlast the ack wait)."""
        waiting = asyncio.wrap_future(future)
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=self._ack_wait / 3)
            if done:
                return waiting.result()
            for msg in held:
                try:
                    await msg.in_progress()
                except nats.errors.Error:
                    pass

    async def _acknowledge(self, lane: layout.Lane, msgs: list) -> None:
        if lane is layout.EVENTS and self._aggregates is not None:
            # What the work added to the aggregates (entries, erasures,
            # shares of the priors) is in the log before it leaves it.
            await self._aggregates.flush()
        for msg in msgs:
            await msg.ack()

    @staticmethod
    async def _put_back(msgs: list) -> None:
        for msg in msgs:
            await msg.nak(delay=1.0)
        await asyncio.sleep(1.0)
