"""The population aggregates' exchange between workers (uba.domain.aggregates,
docs/scaling.md): a JetStream stream every worker publishes its user
partitions' additions to and reads everyone's from.

Stream UBA_AGGREGATES, subject uba.aggregates: limits retention (every
worker reads every message; none is a work item), messages kept for the
longest aggregate window (30 days of peer usage) plus a day, within
`--event-log-max-bytes` (the oldest go first). A message is one batch of
entries of one worker, JSON: {"o": worker, "w": [window names], "d":
[[window index, key, user, ts], ...]}, and with them "e": [pseudonyms of
the users it erased] and "s": [shares of the priors, one per baseline that
turned mature] (uba.domain.priors.Contribution, no user id).

- Out: after a batch of a user partition is committed, and before its
  messages are acknowledged, the worker publishes what the batch added
  (`flush`). So once the events stream is drained, every addition is in
  this stream.
- In: each worker reads the stream from its start with an ordered consumer
  (an ephemeral push consumer that resumes where it was after a reconnect)
  and hands the other workers' entries and erasures to its partitions; its
  own it has. The shares of the priors it hands over from every worker,
  its own too, with their position in the stream: every worker pools them
  in the same order. A starting worker reads up to the end before it takes
  any partition: it begins with the aggregates of everyone, as of its
  start.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import NamedTuple

import nats.errors
import nats.js.errors
from nats.js.api import DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from uba.domain.aggregates import AggregateExchange, Delta
from uba.domain.peers import WINDOW_DAYS
from uba.domain.priors import Contribution
from uba.eventlog import layout

log = logging.getLogger(__name__)

STREAM = "UBA_AGGREGATES"
SUBJECT = "uba.aggregates"
MAX_AGE = (WINDOW_DAYS + 1) * 86400.0
# Entries per message: a few hundred bytes each, well under NATS's 1 MB.
PER_MESSAGE = 1000
# A starting worker gives up waiting for the replay when it made no
# progress for this long (it then starts with what it has).
REPLAY_STALL = 30.0
# Seconds after which the server drops the reader of a worker that is gone.
READER_INACTIVE = 30.0


class Message(NamedTuple):
    """One message of the stream: one worker's entries, then the users it
    erased (pseudonyms), then the shares of its baselines that turned
    mature; applied by readers in that order."""

    owner: str
    deltas: Sequence[Delta] = ()
    erased: Sequence[str] = ()
    shares: Sequence[Contribution] = ()


def encode(owner: str, deltas: Sequence[Delta], erased=(), shares=()) -> bytes:
    names: dict[str, int] = {}
    rows = [[names.setdefault(d.window, len(names)), d.key, d.user, d.ts] for d in deltas]
    message: dict = {"o": owner, "w": list(names), "d": rows}
    if erased:
        message["e"] = list(erased)
    if shares:
        message["s"] = [share.to_list() for share in shares]
    return json.dumps(message, separators=(",", ":")).encode()


def decode(data: bytes) -> Message:
    message = json.loads(data)
    names = message["w"]
    return Message(
        message["o"],
        [Delta(names[w], str(key), str(user), float(ts)) for w, key, user, ts in message["d"]],
        [str(alias) for alias in message.get("e", ())],
        [Contribution.from_list(share) for share in message.get("s", ())],
    )


async def ensure_stream(js, limits: layout.StreamLimits, replicas: int) -> None:
    try:
        await js.stream_info(STREAM)
        return
    except nats.js.errors.NotFoundError:
        pass
    config = StreamConfig(
        name=STREAM,
        description="uba population aggregates: what each worker's user partitions added",
        subjects=[SUBJECT],
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=MAX_AGE,
        max_bytes=limits.max_bytes,
        storage=StorageType.FILE,
        num_replicas=replicas,
    )
    try:
        await js.add_stream(config)
    except nats.js.errors.APIError as exc:
        try:  # another worker may have created it first
            await js.stream_info(STREAM)
        except nats.js.errors.NotFoundError:
            raise layout.refused(exc, replicas) from None


class AggregateStream:
    """One worker's end of the exchange."""

    def __init__(self, exchange: AggregateExchange, owner: str):
        self._exchange = exchange
        self._owner = owner
        self._js = None
        self._sub = None
        self._unsent: list[Delta] = []
        self._unsent_erased: list[str] = []
        self._unsent_shares: list[Contribution] = []
        self._seq = 0  # stream sequence of the last message read
        self._progress = asyncio.Event()
        self.sent = self.received = 0  # entries, for the logs

    async def start(self, js) -> None:
        """Subscribes from the stream's first message and returns once what
        was in the stream when it started has been read."""
        self._js = js
        if self._sub is not None:  # a retry after a failed start
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except nats.errors.Error:
                pass
        info = await js.stream_info(STREAM)
        # A position past the stream's end is one of a stream since deleted.
        self._exchange.positions_end(info.state.last_seq or 0)
        target = info.state.last_seq if info.state.messages else 0
        self._sub = await js.subscribe(
            SUBJECT,
            stream=STREAM,
            cb=self._on_message,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            idle_heartbeat=2.0,
            # The reader of a worker that died goes away on its own.
            inactive_threshold=READER_INACTIVE,
        )
        while self._seq < target:
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), REPLAY_STALL)
            except TimeoutError:
                log.warning(
                    "aggregates: replay stalled at message %d of %d; going on with what was read",
                    self._seq,
                    target,
                )
                break
        log.info(
            "aggregates: read %d messages of the other workers' additions (%d entries)",
            self._seq,
            self.received,
        )

    async def _on_message(self, msg) -> None:
        self._seq = msg.metadata.sequence.stream
        self._progress.set()
        try:
            message = decode(msg.data)
        except (ValueError, KeyError, TypeError, IndexError):
            log.error("aggregates: dropping an unreadable message (seq %d)", self._seq)
            return
        if message.owner != self._owner:
            self.received += len(message.deltas)
            self._exchange.receive(message.deltas, message.erased, message.shares, self._seq)
        elif message.shares:
            # Our own shares of the priors too: every worker pools them in
            # the stream's order (uba.domain.priors.SharedPriors).
            self._exchange.receive((), (), message.shares, self._seq)

    async def flush(self) -> None:
        """Publishes what the partitions added and was not sent yet; what
        fails to go is kept for the next call, in its order."""
        deltas, self._unsent = self._unsent, []
        erased, self._unsent_erased = self._unsent_erased, []
        shares, self._unsent_shares = self._unsent_shares, []
        deltas += self._exchange.take()
        erased += self._exchange.take_erased()
        shares += self._exchange.take_shares()
        if not (deltas or erased or shares):
            return
        if self._js is None:
            self._keep(deltas, erased, shares)
            return
        # The erasures and shares go with the last entries, after them.
        starts = list(range(0, len(deltas), PER_MESSAGE)) or [0]
        for start in starts:
            chunk = deltas[start : start + PER_MESSAGE]
            last = start == starts[-1]
            data = encode(self._owner, chunk, erased if last else (), shares if last else ())
            try:
                await self._js.publish(SUBJECT, data, stream=STREAM)
            except (nats.errors.Error, TimeoutError) as exc:
                self._keep(deltas[start:], erased, shares)
                log.warning(
                    "aggregates: publishing %d entries failed (%r); kept for the next batch",
                    len(deltas) - start,
                    exc,
                )
                return
            self.sent += len(chunk)

    def _keep(self, deltas: list, erased: list, shares: list) -> None:
        self._unsent = deltas + self._unsent
        self._unsent_erased = erased + self._unsent_erased
        self._unsent_shares = shares + self._unsent_shares

    async def close(self) -> None:
        await self.flush()
        if self._sub is not None:
            sub, self._sub = self._sub, None
            try:
                name = (await sub.consumer_info()).name
                await sub.unsubscribe()
                await self._js.delete_consumer(STREAM, name)
            except (nats.errors.Error, TimeoutError):
                pass  # it goes after READER_INACTIVE
