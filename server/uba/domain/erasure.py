"""The right to erasure: forget a person, keep the facts.

`ErasureService.forget(user_id)` deletes what describes the person (their
events, baseline, risk, suppressions, their keys in the detectors' windows)
and replaces their id by a pseudonym wherever facts about them are kept
(anomalies, alerts, incidents, notifications, the audit trail). The
pseudonym is an HMAC of the id under a per-database secret: the same person
always gets the same pseudonym, so the kept facts still line up, and it
cannot be turned back into the id without the secret.

It runs on the ingest writer (its own transactions, between ingest groups),
so it never races ingest for the same user: whatever was committed before
its last transaction is gone; events stored after it are new activity.

With the event log (docs/scaling.md, "Erasure"), a front end does not
erase: `LoggedErasureService` puts the erasure into the log, behind the
user's events, and the workers apply it (`ErasureService.apply`,
`apply_in`) in each partition that holds something of the user, once per
partition; `Tombstones` keeps the events published before it from coming
back when the log delivers them again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from uba.domain.errors import InvalidArgument, Unavailable
from uba.domain.ids import new_uuid7
from uba.domain.security import AuditEvent
from uba.domain.validation import IDENTIFIER_REFUSED, MAX_LENGTHS, first_refused

log = logging.getLogger(__name__)

PSEUDONYM_PREFIX = "erased_"
ACTION = "users.forget"
# Events deleted per writer transaction before the final one.
EVENT_BATCH = 5_000


def pseudonym(secret: str, user_id: str) -> str:
    """The user's pseudonym under the database's secret (96 bits of HMAC)."""
    mac = hmac.new(secret.encode(), user_id.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return PSEUDONYM_PREFIX + mac.hexdigest()[:24]


def _c_escaped(text: str) -> str:
    """The id as protobuf's text format writes it in a request (the audit
    detail): UTF-8 bytes outside printable ASCII as octal escapes."""
    special = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "'": "\\'", "\\": "\\\\"}
    out = []
    for byte in text.encode("utf-8", "surrogatepass"):
        char = chr(byte)
        if char in special:
            out.append(special[char])
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return "".join(out)


class Replacer:
    """Replaces the id where it stands as a whole token in free text (a
    title "alice: new country", a request `user_id: "alice"`, also in its
    escaped text-format spelling), never inside a longer name ("alice" in
    "alice.smith" or "malice")."""

    def __init__(self, user_id: str, replacement: str):
        self.spellings = frozenset({user_id, _c_escaped(user_id)})
        self.replacement = replacement
        self._pattern = re.compile(
            r"(?<![\w.@+-])(?:"
            + "|".join(map(re.escape, sorted(self.spellings, key=len, reverse=True)))
            + r")(?![\w.@+-]*\w)"
        )

    def __call__(self, text: str) -> str:
        if not any(s in text for s in self.spellings):
            return text
        return self._pattern.sub(lambda _: self.replacement, text)


def replace_in_json(value: Any, replace: Callable[[str], str]) -> Any:
    """`replace` applied to every string (keys too) of a JSON value."""
    if isinstance(value, str):
        return replace(value)
    if isinstance(value, list):
        return [replace_in_json(v, replace) for v in value]
    if isinstance(value, dict):
        return {replace(k): replace_in_json(v, replace) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class ErasureReport:
    pseudonym: str
    events_deleted: int = 0
    # Baselines, risk, suppressions, active hours: rows about the person only.
    records_deleted: int = 0
    # Anomalies, alerts, incidents, notifications, audit entries rewritten.
    records_pseudonymised: int = 0

    @property
    def anything(self) -> bool:
        return bool(self.events_deleted or self.records_deleted or self.records_pseudonymised)


class ErasureTransaction(Protocol):
    """What the erasure needs of the writer's transaction (uba.storage.retention)."""

    def pseudonym_secret(self) -> str: ...
    def delete_user_events(self, user_id: str, limit: int | None) -> int: ...
    def erase_user(
        self, user_id: str, pseudonym: str, replace: Replacer, everywhere: bool = True
    ) -> tuple[int, int]: ...
    def append_audit_rewrite(self, event: AuditEvent, pseudonym: str) -> None: ...
    # The event log's workers (below): their partitions' erasures.
    def lock_scopes(self, scopes: Sequence[str]) -> None: ...
    def erasure_report(self, erasure_id: str, scope: str) -> ErasureReport | None: ...
    def record_erasure(
        self, erasure_id: str, scope: str, position: int, report: ErasureReport, now: datetime
    ) -> None: ...
    def tombstones(self, scopes: Sequence[str], after: int) -> dict[tuple[str, str], int]: ...
    def prune_erasures(self, before: datetime) -> int: ...


class Writer(Protocol):
    def run_exclusive(self, action: Callable[[Any], Any]) -> Any: ...


class ForgetsUsers(Protocol):
    """The analyzer: drops a user from its caches and detector windows and
    checkpoints the windows in the given transaction (`keys`: the windows
    kept per partition to load first, if not held yet; `alias`: the user's
    pseudonym, for the processes it shares windows with)."""

    def forget_user(
        self, uow: Any, user_id: str, alias: str = "", keys: Sequence[str] = ()
    ) -> None: ...


def check_user_id(user_id: str) -> None:
    """Ingest's rule for a user id, no stricter: every id it stored can be
    erased (str.isprintable() refused no-break spaces, private-use and
    unassigned characters that ingest takes)."""
    limit = MAX_LENGTHS["user_id"]
    if not user_id or len(user_id) > limit or first_refused(user_id, IDENTIFIER_REFUSED):
        raise InvalidArgument.single(
            "user_id",
            f"required, at most {limit} characters, without control, format or line "
            "separator characters",
        )
    if user_id.startswith(PSEUDONYM_PREFIX):
        raise InvalidArgument.single("user_id", "is a pseudonym already")


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    """An erasure as the event log carries it, in the user's partition and
    in every population partition (docs/scaling.md, "Erasure")."""

    erasure_id: str
    user_id: str
    actor: str = ""
    peer: str = ""


@dataclass(frozen=True, slots=True)
class ErasurePart:
    """Where a worker applies an erasure: a partition (`scope`, as "p3" or
    "population.1") and the erasure's position in it (the log's sequence
    number): what the log delivers there from before that position, and
    delivers again after the erasure, stays erased (`Tombstones`)."""

    scope: str
    position: int


class ErasureService:
    def __init__(
        self,
        writer: Writer | None,
        analyzer: ForgetsUsers | None,
        clock: Callable[[], datetime],
    ):
        """`writer`: where the erasure's transactions run (None: only
        `apply_in`, in the caller's transaction)."""
        self._writer = writer
        self._analyzer = analyzer
        self._clock = clock

    def forget(self, user_id: str, actor: str = "", peer: str = "") -> ErasureReport:
        """Erases the user (blocking: call it off the event loop)."""
        check_user_id(user_id)
        return self._erase(user_id, actor, peer)

    def apply(
        self, request: ErasureRequest, part: ErasurePart, keys: Sequence[str] = ()
    ) -> ErasureReport:
        """A worker of the event log: the erasure the log brought to the
        user's partition, applied there once (a second delivery answers
        what the first did). Blocking, like `forget`."""
        return self._erase(request.user_id, request.actor, request.peer, request, part, keys)

    def apply_in(self, uow: Any, request: ErasureRequest, part: ErasurePart) -> ErasureReport:
        """A worker of the event log: the erasure the log brought to a
        population partition, in the caller's transaction: what the
        partition's detectors hold and wrote of the user (the events, the
        audit entry are the user partition's). Once per partition."""
        done = self._applied(uow, request, part)
        if done is not None:
            return done
        return self._final(
            uow, request.user_id, request.actor, request.peer, 0, request, part, (), whole=False
        )

    def _erase(
        self,
        user_id: str,
        actor: str,
        peer: str,
        request: ErasureRequest | None = None,
        part: ErasurePart | None = None,
        keys: Sequence[str] = (),
    ) -> ErasureReport:
        writer = self._writer
        assert writer is not None, "an ErasureService without a writer only applies in place"
        if request is not None and part is not None:
            # Applied already (delivered again): the events stored since are
            # new activity, not to be deleted by a second pass.
            found: list[ErasureReport | None] = []
            # (The action's None result: nothing for the writer to tell subscribers.)
            writer.run_exclusive(
                lambda uow: found.append(self._applied(uow, request, part))
            ).result()
            if found[0] is not None:
                return found[0]
        # Events in bounded transactions first, so ingest waits for none long.
        batch: list[int] = []

        def delete_batch(uow: Any) -> None:
            batch.append(uow.retention.delete_user_events(user_id, EVENT_BATCH))

        while not batch or batch[-1] == EVENT_BATCH:
            writer.run_exclusive(delete_batch).result()
        deleted = sum(batch)
        done_: list[ErasureReport] = []

        def final(uow: Any) -> None:
            done_.append(self._final(uow, user_id, actor, peer, deleted, request, part, keys))

        # Results leave through `done_`: an action's None result is no change
        # for the writer to tell subscribers about.
        writer.run_exclusive(final).result()
        return done_[0]

    @staticmethod
    def _applied(uow: Any, request: ErasureRequest, part: ErasurePart) -> ErasureReport | None:
        tx: ErasureTransaction = uow.retention
        tx.lock_scopes([part.scope])
        return tx.erasure_report(request.erasure_id, part.scope)

    def _final(
        self,
        uow: Any,
        user_id: str,
        actor: str,
        peer: str,
        deleted: int,
        request: ErasureRequest | None,
        part: ErasurePart | None,
        keys: Sequence[str],
        whole: bool = True,
    ) -> ErasureReport:
        """The last transaction: everything but the events deleted before
        (`deleted` of them). Not `whole`: a population partition's part,
        without the events and the audit entry (the user partition's)."""
        tx: ErasureTransaction = uow.retention
        if request is not None and part is not None:
            # Under the partition's lock: a worker that lost the partition
            # and still commits its events waits, or finds the tombstone.
            done = self._applied(uow, request, part)
            if done is not None:
                return done
        alias = pseudonym(tx.pseudonym_secret(), user_id)
        events = tx.delete_user_events(user_id, None) if whole else 0
        removed, rewritten = tx.erase_user(user_id, alias, Replacer(user_id, alias), whole)
        if self._analyzer is not None:
            self._analyzer.forget_user(uow, user_id, alias, keys)
        report = ErasureReport(alias, deleted + events, removed, rewritten)
        if whole:
            tx.append_audit_rewrite(
                AuditEvent(
                    ACTION,
                    "ok",
                    actor=actor,
                    target=alias,
                    peer=peer,
                    occurred_at=self._clock(),
                    detail=f"events_deleted={report.events_deleted} "
                    f"records_deleted={removed} records_pseudonymised={rewritten}",
                ),
                alias,
            )
        if request is not None and part is not None:
            tx.record_erasure(request.erasure_id, part.scope, part.position, report, self._clock())
        return report


# How long a worker's partitions remember an erasure they applied: what
# the log delivers again from before it later than this (it was held
# unacknowledged that long) would be stored again.
KEEP_TOMBSTONES = timedelta(days=30)
PRUNE_EVERY = timedelta(hours=1)


class Tombstones:
    """A worker's guard against resurrection: an event of an erased user,
    published before the erasure and delivered after it (a worker died
    holding it unacknowledged, and the next owner of the partition met the
    erasure first), is dropped rather than stored or analysed.

    The worker tells where each event comes from (`expect`: its partition
    and position in the log); in each transaction, before anything is
    stored, `admit` locks those partitions (as the erasure does: a worker
    that lost a partition and still commits its events waits for the
    erasure, or finds it) and drops the events older than an erasure of
    their user there. Erasures are found by pseudonym: no user id is kept."""

    def __init__(self, clock: Callable[[], datetime]):
        self._clock = clock
        self._lock = threading.Lock()
        self._positions: dict[str, tuple[str, int]] = {}
        self._pruned: datetime | None = None
        self.dropped = 0  # for the logs

    def expect(self, scope: str, events: Sequence[Any], positions: Sequence[int]) -> None:
        """The events of one batch of partition `scope`, at these positions
        (any thread; before they are submitted)."""
        with self._lock:
            for event, position in zip(events, positions, strict=True):
                known = self._positions.get(event.event_id)
                # A copy sent again after the erasure (a client's retry) is new.
                if known is None or known[1] < position:
                    self._positions[event.event_id] = (scope, position)

    def admit(self, uow: Any, events: list[Any]) -> list[Any]:
        """The events to store, in the writer's transaction (the ingest
        writer's admission hook, uba.domain.ingest.GroupCommit)."""
        with self._lock:
            where = {
                e.event_id: self._positions.pop(e.event_id)
                for e in events
                if e.event_id in self._positions
            }
        kept = self.filter(uow, events, where)
        now = self._clock()
        if self._pruned is None or now - self._pruned >= PRUNE_EVERY:
            uow.retention.prune_erasures(now - KEEP_TOMBSTONES)
            self._pruned = now
        return kept

    def filter(self, uow: Any, events: list[Any], where: dict[str, tuple[str, int]]) -> list[Any]:
        """`events` without those `where` places before an erasure of their
        user in their partition."""
        if not where:
            return events
        tx: ErasureTransaction = uow.retention
        scopes = sorted({scope for scope, _ in where.values()})
        tx.lock_scopes(scopes)
        stones = tx.tombstones(scopes, min(position for _, position in where.values()))
        if not stones:
            return events
        secret = tx.pseudonym_secret()
        aliases: dict[str, str] = {}
        kept = []
        for event in events:
            spot = where.get(event.event_id)
            if spot is not None:
                alias = aliases.get(event.user_id)
                if alias is None:
                    alias = aliases[event.user_id] = pseudonym(secret, event.user_id)
                erased_at = stones.get((spot[0], alias))
                if erased_at is not None and spot[1] < erased_at:
                    continue
            kept.append(event)
        if len(kept) < len(events):
            self.dropped += len(events) - len(kept)
            log.info(
                "dropped %d events delivered again after their user's erasure",
                len(events) - len(kept),
            )
        return kept


# How long ForgetUser on a front end of the event log waits for the workers
# to apply the erasure before it answers that the erasure is on its way.
APPLY_WAIT = 30.0


class ErasureLog(Protocol):
    """Where a front end of the event log sends an erasure (the adapter:
    uba.eventlog.publisher)."""

    def erase(self, request: ErasureRequest) -> Future:
        """Publishes the erasure to the user's partition, after the events
        published before, and to every population partition; resolves to
        the number of partitions it went to once the log stored it all, or
        raises a DomainError."""


class ErasureProgress(Protocol):
    """What the workers recorded of an erasure (storage)."""

    def erasure_reports(self, erasure_id: str) -> list[ErasureReport]: ...


class LoggedErasureService:
    """ForgetUser on a front end of the event log (docs/scaling.md,
    "Erasure"): the erasure goes into the log, where the workers apply it
    in order with the user's events, each in the partitions it owns; the
    call answers once every partition applied it, with what they erased.
    Past `wait` seconds (a backlog, no worker running) it answers
    UNAVAILABLE: the erasure stays in the log and is applied when a worker
    reaches it; calling again is safe and waits again."""

    def __init__(
        self,
        log: ErasureLog,
        progress: ErasureProgress,
        wait: float = APPLY_WAIT,
        poll: float = 0.1,
    ):
        self._log = log
        self._progress = progress
        self._wait = wait
        self._poll = poll

    def forget(self, user_id: str, actor: str = "", peer: str = "") -> ErasureReport:
        """Blocking: call it off the event loop."""
        check_user_id(user_id)
        request = ErasureRequest(new_uuid7(), user_id, actor, peer)
        parts = self._log.erase(request).result(timeout=self._wait)
        give_up = time.monotonic() + self._wait
        while True:
            reports = self._progress.erasure_reports(request.erasure_id)
            if len(reports) >= parts:
                return ErasureReport(
                    reports[0].pseudonym,
                    sum(r.events_deleted for r in reports),
                    sum(r.records_deleted for r in reports),
                    sum(r.records_pseudonymised for r in reports),
                )
            if time.monotonic() >= give_up:
                raise Unavailable(
                    f"the erasure is in the event log (erasure {request.erasure_id}), applied "
                    f"in {len(reports)} of its {parts} partitions after {self._wait:.0f} s: the "
                    "workers apply it in order once they reach it (a backlog, or no worker "
                    "running); calling ForgetUser again is safe and waits for a new one",
                    retry_after=self._wait,
                )
            time.sleep(self._poll)
