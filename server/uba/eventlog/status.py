"""The workers' backlog as a front end reads it from NATS (GetCapabilities,
metrics; docs/scaling.md).

The stream is a work queue: it keeps a message until its worker
acknowledges it, after the commit. So the messages it holds per subject are
exactly each partition's consumer lag (waiting plus delivered and not yet
acknowledged, what `worker.consumer_lag` adds up from the consumers), and
its first message is the oldest event not stored yet. One stream-info
request (with the per-subject counts) and one read of the lease bucket's
`members` key give it all; the result is reused for `ttl` seconds, so
frequent GetCapabilities calls or scrapes cost NATS nothing more.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js.kv import KeyValue

from uba.domain.backlog import EventLogStatus
from uba.eventlog import layout

TTL = 2.0  # seconds a reading is reused
TIMEOUT = 1.0  # seconds NATS may take to answer one request

_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_time(text: str) -> datetime | None:
    """NATS's RFC 3339 times carry nanoseconds, which datetime cannot."""
    match = _RFC3339.match(text or "")
    if not match:
        return None
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    return moment.replace(microsecond=micros).astimezone(UTC)


class StatusReader:
    def __init__(
        self,
        nc: NatsClient,
        partitions: int,
        ttl: float = TTL,
        timeout: float = TIMEOUT,
        clock: Callable[[], float] = time.time,
    ):
        self._nc = nc
        self._js = nc.jetstream(timeout=timeout)
        self._kv: KeyValue | None = None
        self._partitions = partitions
        self._ttl = ttl
        self._timeout = timeout
        self._clock = clock
        self._lock = asyncio.Lock()
        self._last: EventLogStatus | None = None
        self._read_at = 0.0

    async def read(self) -> EventLogStatus:
        """The latest reading, at most `ttl` seconds old. Concurrent callers
        share one read."""
        async with self._lock:
            if self._last is None or time.monotonic() - self._read_at >= self._ttl:
                self._last = await self._read()
                self._read_at = time.monotonic()
            return self._last

    async def _read(self) -> EventLogStatus:
        now = datetime.fromtimestamp(self._clock(), UTC)
        if not self._nc.is_connected:
            return EventLogStatus(self._partitions, now, unavailable_reason="event log unreachable")
        try:
            lag, oldest_at = await self._stream_lag()
            workers = await self._live_workers()
        except (nats.errors.Error, TimeoutError) as exc:
            return EventLogStatus(
                self._partitions,
                now,
                unavailable_reason=f"event log did not answer: {type(exc).__name__}",
            )
        except (ValueError, KeyError, TypeError) as exc:
            return EventLogStatus(
                self._partitions, now, unavailable_reason=f"event log status unreadable: {exc}"
            )
        return EventLogStatus(self._partitions, now, lag, workers, oldest_at)

    async def _stream_lag(self) -> tuple[tuple[int, ...], datetime | None]:
        reply = await self._nc.request(
            f"$JS.API.STREAM.INFO.{layout.STREAM}",
            json.dumps({"subjects_filter": f"{layout.SUBJECT_PREFIX}.*"}).encode(),
            timeout=self._timeout,
        )
        info = json.loads(reply.data)
        if "error" in info:
            raise ValueError(info["error"].get("description", "stream info refused"))
        self._partitions = layout.partitions_in(info["config"].get("description"))
        state = info["state"]
        counts = state.get("subjects") or {}
        lag = tuple(int(counts.get(layout.subject(p), 0)) for p in range(self._partitions))
        oldest_at = parse_time(state.get("first_ts", "")) if state.get("messages") else None
        return lag, oldest_at

    async def _live_workers(self) -> int:
        if self._kv is None:
            try:
                self._kv = await self._js.key_value(layout.LEASE_BUCKET)
            except nats.js.errors.BucketNotFoundError:
                return 0  # no worker has ever started
        try:
            entry = await self._kv.get(layout.MEMBERS_KEY)
        except nats.js.errors.KeyNotFoundError:
            return 0
        members = json.loads(entry.value or b"{}")
        now = self._clock()
        # Entries of workers that died stay until another worker prunes them.
        return sum(1 for expires in members.values() if expires > now)
