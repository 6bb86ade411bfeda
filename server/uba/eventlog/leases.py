"""Exclusive ownership of partitions through leases in a JetStream
key-value bucket.

Key `partition.<n>` (`population.<n>` for the population partitions, a
second `Leases` on the same bucket) holds {"owner", "expires"}; every change is
revision-checked (`update(..., last=revision)`), so of two workers racing
for a partition exactly one wins. Owners renew each lease every third of
its term; a lease whose owner stopped renewing is taken over once it has
expired. Key `members` lists the live workers (each renews its own entry
the same way) so that each takes its share, ceil(partitions / workers),
and gives back what is over it.

Leases keep each user on one worker (warm caches, no contention); they
are not what keeps the data right: a second worker that processes a
partition during a takeover stores nothing twice (insert-or-ignore by
event_id) and baselines are version-checked in storage.
"""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from collections.abc import Callable

import nats.errors
import nats.js.errors

from uba.eventlog import layout

log = logging.getLogger(__name__)


class Leases:
    def __init__(
        self,
        kv,
        owner: str,
        partitions: int,
        lease_seconds: float,
        clock: Callable[[], float] = time.time,
        key: Callable[[int], str] = layout.lease_key,
    ):
        self._kv = kv
        self._key = key
        self.owner = owner
        self.partitions = partitions
        self.lease_seconds = lease_seconds
        self._clock = clock
        # partition -> (revision of our lease, when it expires)
        self._held: dict[int, tuple[int, float]] = {}
        self.members = 1

    @property
    def owned(self) -> set[int]:
        return set(self._held)

    def target(self) -> int:
        return math.ceil(self.partitions / max(1, self.members))

    def _value(self, expires: float) -> bytes:
        return json.dumps({"owner": self.owner, "expires": expires}).encode()

    async def heartbeat(self) -> None:
        """Renews this worker's entry in `members` and drops expired ones."""
        now = self._clock()
        for _ in range(10):  # a lost race just means: read again
            try:
                entry = await self._kv.get(layout.MEMBERS_KEY)
                members = json.loads(entry.value or b"{}")
                revision = entry.revision
            except nats.js.errors.KeyNotFoundError:
                members, revision = {}, 0
            members = {k: v for k, v in members.items() if v > now}
            members[self.owner] = now + self.lease_seconds
            data = json.dumps(members).encode()
            try:
                if revision:
                    await self._kv.update(layout.MEMBERS_KEY, data, last=revision)
                else:
                    await self._kv.create(layout.MEMBERS_KEY, data)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
            self.members = len(members)
            return

    async def leave(self) -> None:
        """Gives back every lease and the membership (a clean stop)."""
        for partition in list(self._held):
            await self.release(partition)
        for _ in range(10):
            try:
                entry = await self._kv.get(layout.MEMBERS_KEY)
                members = json.loads(entry.value or b"{}")
                members.pop(self.owner, None)
                await self._kv.update(
                    layout.MEMBERS_KEY, json.dumps(members).encode(), last=entry.revision
                )
                return
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
            except nats.js.errors.KeyNotFoundError:
                return

    async def renew(self) -> set[int]:
        """Renews every lease held; returns the partitions lost (another
        worker took them over, or ours ran out while NATS was unreachable)."""
        lost: set[int] = set()
        for partition, (revision, expires) in list(self._held.items()):
            new_expiry = self._clock() + self.lease_seconds
            try:
                new_revision = await self._renew_one(partition, revision, new_expiry)
            except nats.js.errors.KeyWrongLastSequenceError:
                new_revision = None
            except (nats.errors.Error, TimeoutError) as exc:
                if self._clock() >= expires:
                    lost.add(partition)
                else:
                    log.warning("renewing the lease %s failed: %r", self._key(partition), exc)
                continue
            if new_revision is None:
                lost.add(partition)
                continue
            self._held[partition] = (new_revision, new_expiry)
        for partition in lost:
            self._held.pop(partition, None)
            log.warning("lost the lease %s", self._key(partition))
        return lost

    async def _renew_one(self, partition: int, revision: int, expires: float) -> int | None:
        """The lease's new revision, or None when another worker holds it."""
        key = self._key(partition)
        try:
            return await self._kv.update(key, self._value(expires), last=revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        # A renewal that timed out may have been stored anyway (the bucket's
        # leader died before answering): then the newer revision is ours.
        try:
            entry = await self._kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        current = json.loads(entry.value) if entry.value else {}
        if current.get("owner") != self.owner:
            return None
        return await self._kv.update(key, self._value(expires), last=entry.revision)

    def surplus(self) -> list[int]:
        """Partitions over this worker's share, to give back."""
        extra = len(self._held) - self.target()
        return sorted(self._held)[-extra:] if extra > 0 else []

    async def release(self, partition: int) -> None:
        held = self._held.pop(partition, None)
        if held is None:
            return
        try:
            await self._kv.delete(self._key(partition), last=held[0])
        except (nats.errors.Error, TimeoutError) as exc:  # it expires on its own
            log.warning("releasing the lease %s failed: %r", self._key(partition), exc)

    async def acquire(self) -> set[int]:
        """Takes free or expired partitions up to this worker's share;
        returns those gained. Starts at a point of its own so that workers
        starting together try different partitions first."""
        gained: set[int] = set()
        start = zlib.crc32(self.owner.encode()) % self.partitions
        for i in range(self.partitions):
            if len(self._held) >= self.target():
                break
            partition = (start + i) % self.partitions
            if partition in self._held:
                continue
            key = self._key(partition)
            now = self._clock()
            expires = now + self.lease_seconds
            try:
                try:
                    entry = await self._kv.get(key)
                except nats.js.errors.KeyNotFoundError:
                    revision = await self._kv.create(key, self._value(expires))
                else:
                    current = json.loads(entry.value) if entry.value else {}
                    if current.get("expires", 0) > now and current.get("owner") != self.owner:
                        continue
                    revision = await self._kv.update(key, self._value(expires), last=entry.revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # another worker was quicker
            self._held[partition] = (revision, expires)
            gained.add(partition)
        return gained
