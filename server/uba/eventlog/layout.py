"""What front ends and workers agree on: the streams, their subjects, the
partition of a user (or of a population key), the lease bucket, and the
wire form of an event."""

from __future__ import annotations

import json
import logging
import re
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from uba.api import converters as conv
from uba.domain.erasure import ErasureRequest
from uba.domain.events import ActivityEvent
from uba.v1 import events_pb2

STREAM = "UBA_EVENTS"
SUBJECT_PREFIX = "uba.events"
# Key-value bucket of the partition leases and the worker membership.
LEASE_BUCKET = "UBA_EVENTLOG_LEASES"
MEMBERS_KEY = "members"
# The partition count lives in the stream's description (nats-server 2.9
# has no stream metadata): every process reads it back rather than trusting
# its own setting, so all agree even if their flags differ.
_DESCRIPTION = "uba activity events; partitions={n}"
_PARTITIONS = re.compile(r"partitions=(\d+)")
# Storage errors of a publish that mean "full" (discard=new at a limit).
STREAM_FULL_ERR_CODE = 10077
# JetStream keeps at most five replicas of a stream.
MAX_REPLICAS = 5


# The population inputs: copies of the events population detectors read,
# re-keyed by what they count (a source address; "" for the organisation),
# in a stream of their own with the events' partition count.
POPULATION_STREAM = "UBA_POPULATION"
POPULATION_SUBJECT_PREFIX = "uba.population"
_POPULATION_DESCRIPTION = "uba population inputs (events re-keyed by source); partitions={n}"


@dataclass(frozen=True)
class Lane:
    """One kind of partitioned messages: its stream, subjects, durable
    consumers and lease keys."""

    stream: str
    subject_prefix: str
    durable_prefix: str
    lease_prefix: str
    description: str
    what: str  # "partition" or "population partition", for the logs

    def subject(self, partition: int) -> str:
        return f"{self.subject_prefix}.{partition}"

    def durable(self, partition: int) -> str:
        return f"{self.durable_prefix}{partition}"

    def lease_key(self, partition: int) -> str:
        return f"{self.lease_prefix}{partition}"

    def describe(self, partitions: int) -> str:
        return self.description.format(n=partitions)


def population_msg_id(event_id: str, partition: int) -> str:
    """The copy of an event on a population partition: JetStream drops a
    second one as it drops a second event."""
    return f"{event_id}/population.{partition}"


def subject(partition: int) -> str:
    return f"{SUBJECT_PREFIX}.{partition}"


def partition_of(user_id: str, partitions: int) -> int:
    """Stable across processes and Python versions (str hash is salted)."""
    return zlib.crc32(user_id.encode("utf-8")) % partitions


def durable(partition: int) -> str:
    """The pull consumer of a partition: one, shared by its successive owners."""
    return f"uba-p{partition}"


def lease_key(partition: int) -> str:
    return f"partition.{partition}"


def describe(partitions: int) -> str:
    return _DESCRIPTION.format(n=partitions)


def partitions_in(description: str | None, stream: str = STREAM) -> int:
    match = _PARTITIONS.search(description or "")
    if not match:
        raise ValueError(f"stream {stream} does not say its partition count: {description!r}")
    return int(match.group(1))


EVENTS = Lane(STREAM, SUBJECT_PREFIX, "uba-p", "partition.", _DESCRIPTION, "partition")
POPULATION = Lane(
    POPULATION_STREAM,
    POPULATION_SUBJECT_PREFIX,
    "uba-pop-p",
    "population.",
    _POPULATION_DESCRIPTION,
    "population partition",
)


@dataclass(frozen=True)
class StreamLimits:
    """Chosen when the stream is created; later front ends read them back."""

    partitions: int = 16
    max_msgs: int = 1_000_000
    max_bytes: int = 1 << 30
    duplicate_window: float = 600.0  # seconds JetStream remembers Nats-Msg-Id
    # Copies of the stream, the lease bucket and the consumers; >1 needs a
    # cluster of at least that many JetStream servers.
    replicas: int = 1

    def __post_init__(self):
        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise ValueError(
                f"--event-log-replicas must be 1 to {MAX_REPLICAS} (JetStream's limit), "
                f"got {self.replicas}"
            )


@dataclass(frozen=True)
class StreamShape:
    """What the stream was created with, as every process reads it back."""

    partitions: int
    replicas: int


class EventLogRefused(Exception):
    """JetStream refused to create what the settings ask for."""


# JetStream's codes when a stream cannot get the replicas asked: a single
# server, or fewer servers in the cluster than replicas.
_NOT_CLUSTERED = 10074
_NO_PEERS = (10005, 10023)


def refused(exc, replicas: int) -> Exception:
    """The error to report when creating the stream or the lease bucket
    failed with JetStream's `exc` (an APIError)."""
    code = getattr(exc, "err_code", None)
    if replicas > 1 and (code == _NOT_CLUSTERED or code in _NO_PEERS):
        return EventLogRefused(
            f"--event-log-replicas {replicas}: the NATS servers refused {replicas} replicas "
            f"({exc.description}); that needs a JetStream cluster of at least {replicas} "
            "servers"
        )
    return exc


def servers(url: str) -> list[str]:
    """`nats://h1:4222,h2:4222` -> one URL per server."""
    parsed = urlsplit(url)
    if parsed.scheme not in ("nats", "tls") or not parsed.netloc:
        raise ValueError(f"not a nats:// URL: {url!r}")
    hosts = [h.strip() for h in parsed.netloc.split(",") if h.strip()]
    return [f"{parsed.scheme}://{h}" for h in hosts]


# A message that is not an event carries this header: "erase" (the body is
# an ErasureRequest as JSON). Workers apply it in its place in the partition.
CONTROL_HEADER = "Uba-Control"
ERASE = "erase"


def erasure_msg_id(erasure_id: str, lane: Lane, partition: int) -> str:
    return f"{erasure_id}/{lane.lease_key(partition)}"


def encode_erasure(request: ErasureRequest) -> bytes:
    return json.dumps(
        {
            "id": request.erasure_id,
            "user": request.user_id,
            "actor": request.actor,
            "peer": request.peer,
        },
        separators=(",", ":"),
    ).encode()


def control_of(msg) -> str:
    """The control kind of a message ("" for an event)."""
    headers = msg.headers
    return (headers.get(CONTROL_HEADER) or "") if headers else ""


def decode_erasure(data: bytes) -> ErasureRequest:
    body = json.loads(data)
    return ErasureRequest(
        str(body["id"]), str(body["user"]), str(body.get("actor", "")), str(body.get("peer", ""))
    )


def encode(event: ActivityEvent) -> bytes:
    m = events_pb2.ActivityEvent()
    conv.event_to_pb(event, m)
    return m.SerializeToString()


def decode(data: bytes) -> ActivityEvent:
    m = events_pb2.ActivityEvent()
    m.ParseFromString(data)
    return conv.event_from_pb(m)


def error_logger(log: logging.Logger, what: str) -> Callable[[Exception], Awaitable[None]]:
    """An `error_cb` for nats.connect: nats-py's default logs each
    connection error (a refused reconnect, a dropped socket) at ERROR with
    its traceback, many times during one outage; these are expected while
    NATS restarts and the client reconnects by itself, so one line at
    WARNING says it."""

    async def logged(exc: Exception) -> None:
        log.warning("%s: NATS connection: %r", what, exc)

    return logged
