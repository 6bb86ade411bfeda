"""The delivery worker: one thread per destination sends the outbox in
order, after the commits that wrote it.

A sender holds the destination's lease while it works (uba.storage.outbox),
so of several server processes on one database exactly one sends each
destination's messages. The head of a destination's queue blocks the rest
until it is delivered or dead: a receiver sees each destination's messages
in the order the changes were made. A message sent but not yet marked
delivered when the process dies is sent again by the next holder, with the
same message id (the idempotency id).
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from uba import observability
from uba.delivery.channels import Channel
from uba.delivery.config import Destination
from uba.domain.notifications import Notification
from uba.observability import tracing

log = logging.getLogger(__name__)

# A sender renews its lease on every round; another process takes the
# destination over this long after the holder stopped renewing.
LEASE_SECONDS = 15.0
# The lease is renewed once less than this is left of it.
RENEW_BEFORE = timedelta(seconds=LEASE_SECONDS * 2 / 3)
# How often an idle sender looks for work written by other processes.
POLL_SECONDS = 1.0
# Messages read per round; marked delivered together in one transaction.
BATCH = 50


def backoff(destination: Destination, attempts: int, rng: random.Random) -> float:
    """Exponential backoff with full jitter in its upper half: the n-th
    failure waits between half and all of initial x 2^(n-1), capped."""
    ceiling = min(
        destination.retry_max_seconds,
        destination.retry_initial_seconds * 2 ** min(attempts - 1, 30),
    )
    return ceiling * (0.5 + 0.5 * rng.random())


class DestinationSender:
    """Sends one destination's outbox; runs on its own thread."""

    def __init__(self, store, destination: Destination, owner: str, clock: Callable[[], datetime]):
        self.store = store
        self.destination = destination
        self.owner = owner
        self.clock = clock
        self.channel = Channel(destination)
        self.wake = threading.Event()
        self._stopping = False
        self._lease_until: datetime | None = None
        self._rng = random.Random()
        self._thread = threading.Thread(
            target=self._run, name=f"uba-deliver-{destination.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stopping = True
        self.wake.set()
        self._thread.join(timeout)
        try:
            with self.store.outbox() as outbox:
                outbox.release_lease(self.destination.name, self.owner)
        except Exception:  # noqa: BLE001 - it expires on its own
            log.debug("releasing the lease of %s failed", self.destination.name, exc_info=True)
        self.channel.close()

    def _run(self) -> None:
        while not self._stopping:
            self.wake.clear()
            try:
                wait = self._round()
            except Exception:  # the database is away: try again shortly
                log.warning("delivery to %s paused", self.destination.name, exc_info=True)
                wait = POLL_SECONDS * 5
            if wait > 0 and not self._stopping:
                self.wake.wait(wait)

    def _round(self) -> float:
        """Sends what is due; returns how long to wait before the next round."""
        name = self.destination.name
        now = self.clock()
        if self._lease_until is None or now >= self._lease_until - RENEW_BEFORE:
            # A write transaction only to take or renew the lease: an idle
            # sender that holds it reads the outbox without one.
            until = now + timedelta(seconds=LEASE_SECONDS)
            with self.store.outbox() as outbox:
                if not outbox.acquire_lease(name, self.owner, now, until):
                    self._lease_until = None
                    return POLL_SECONDS
            self._lease_until = until
        with self.store.outbox_read() as outbox:
            batch = outbox.head(name, BATCH)
        if not batch:
            return POLL_SECONDS
        delivered: list[Notification] = []
        wait = 0.0
        try:
            for notification in batch:
                if self._stopping:
                    break
                now = self.clock()
                due = notification.next_attempt_at or now
                if due > now:
                    wait = (due - now).total_seconds()
                    break
                started = time.perf_counter()
                with tracing.span(
                    "uba.notification.deliver",
                    **{
                        "uba.destination": name,
                        "uba.destination.kind": self.destination.kind,
                        "uba.notification.message_id": notification.message_id,
                        "uba.notification.attempt": notification.attempts + 1,
                    },
                ) as span:
                    outcome = self.channel.send(notification, now)
                    if not outcome.delivered:
                        tracing.mark_failed(span, outcome.error)
                observability.recorder.delivered(
                    name, outcome.delivered, time.perf_counter() - started
                )
                notification.attempts += 1
                if outcome.delivered:
                    notification.delivered_at = self.clock()
                    delivered.append(notification)
                    continue
                wait = self._failed(
                    notification, outcome.retryable, outcome.error, outcome.retry_after
                )
                if wait > 0:
                    break  # in order: nothing behind it goes first
        finally:
            if delivered:
                with self.store.outbox() as outbox:
                    for n in delivered:
                        outbox.delivered(n.position, n.attempts, n.delivered_at or self.clock())
        return min(wait, POLL_SECONDS * 30) if wait else 0.0

    def _failed(
        self, n: Notification, retryable: bool, error: str, retry_after: float | None
    ) -> float:
        """Records a failed send; returns how long the head now waits (0
        when it went to dead letters and the next one may go)."""
        now = self.clock()
        age = (now - n.created_at).total_seconds()
        name = self.destination.name
        if not retryable or age >= self.destination.dead_after_seconds:
            reason = error if not retryable else f"undeliverable for {age:.0f} s; last: {error}"
            with self.store.outbox() as outbox:
                outbox.dead(n.position, n.attempts, reason)
            observability.recorder.dead_letter(name)
            log.warning("notification %s to %s is a dead letter: %s", n.message_id, name, reason)
            return 0.0
        delay = backoff(self.destination, n.attempts, self._rng)
        if retry_after is not None:
            delay = max(delay, retry_after)
        with self.store.outbox() as outbox:
            outbox.failed(n.position, n.attempts, now + timedelta(seconds=delay), error)
        log.info(
            "delivery of %s to %s failed (attempt %d): %s; retry in %.1f s",
            n.message_id,
            name,
            n.attempts,
            error,
            delay,
        )
        return delay


class DeliveryWorker:
    """The senders of every configured destination in this process."""

    def __init__(self, store, destinations: Sequence[Destination], clock: Callable[[], datetime]):
        self.owner = f"{socket.gethostname()[:30]}-{os.getpid()}-{secrets.token_hex(4)}"
        self.senders = {
            d.name: DestinationSender(store, d, self.owner, clock) for d in destinations
        }

    def start(self) -> None:
        for sender in self.senders.values():
            sender.start()

    def poke(self, _changed: object = None) -> None:
        """Something committed: senders look at their outbox now."""
        for sender in self.senders.values():
            sender.wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        for sender in self.senders.values():
            sender.stop(timeout)
