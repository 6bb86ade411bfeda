"""Ingest: validate, store once, acknowledge only what is committed.

Writes go through one writer thread per process that gathers the events of
all concurrent calls into one transaction (group commit): many small calls
cost one commit instead of one each, and on SQLite there is a single writer
by construction. A caller's future resolves only after its transaction
committed, so an acknowledgement always means "durable".

Where valid events go is a port, `EventSink`: by default the writer queue
here; a front end of a partitioned event log (uba.eventlog) publishes them
instead, and its workers run the same `GroupCommit` on what they consume.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from uba.domain.errors import DomainError, InvalidArgument, ResourceExhausted, Unavailable
from uba.domain.events import ActivityEvent, RecordOutcome, RecordStatus
from uba.domain.ids import new_uuid7
from uba.domain.validation import validate_event

log = logging.getLogger(__name__)


class IngestTransaction(Protocol):
    """The write transaction ingest stores events in (storage's unit of
    work, uba.storage.store, offers it)."""

    def store_events(
        self, events: Sequence[ActivityEvent], received_at: datetime
    ) -> tuple[set[str], dict[str, datetime]]:
        """Inserts the new events; returns the ids inserted now and, for the
        others (already stored), when they were first received."""


class WriteStore(Protocol):
    """What ingest needs from storage: one transaction at a time."""

    def unit_of_work(self) -> AbstractContextManager[IngestTransaction]: ...


class Analysis(Protocol):
    """What runs on stored events inside their transaction (uba.domain.analysis)."""

    def process(self, uow: IngestTransaction, events: Sequence[ActivityEvent]) -> list: ...
    def rollback(self) -> None: ...
    def take_changes(self) -> list: ...


class Outbox(Protocol):
    """Writes notifications of a transaction's alert and incident changes
    in that transaction (uba.domain.notifications.Notifier)."""

    def enqueue(self, uow: Any, changes: Sequence) -> int: ...


class GroupTelemetry(Protocol):
    """One ingest group as telemetry sees it (a context manager around the
    group's write): `committing` just before the transaction commits,
    `committed` right after."""

    def __enter__(self) -> GroupTelemetry: ...
    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None: ...
    def committing(self) -> None: ...
    def committed(self) -> None: ...


class WriterTelemetry(Protocol):
    """Where the writer reports its groups (uba.observability.writer: metrics
    and trace spans). `capture` runs on the caller's thread when it submits,
    so that the group's span can join the caller's trace."""

    def capture(self) -> Any: ...
    def group(self, captured: list[Any], events: int) -> GroupTelemetry: ...


class _Quiet:
    """The telemetry of a server without metrics or traces."""

    def capture(self) -> Any:
        return None

    def group(self, captured: list[Any], events: int) -> _Quiet:
        return self

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        return None

    def committing(self) -> None:
        return None

    def committed(self) -> None:
        return None


class EventSink(Protocol):
    """Makes valid events durable. The future resolves to one RecordOutcome
    per event, in order (ACCEPTED or DUPLICATE), once they are durable, or
    raises a DomainError (ResourceExhausted, Unavailable). Submitting may
    raise ResourceExhausted at once."""

    def submit(self, events: list[ActivityEvent]) -> Future: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


def _changes(result: Any) -> list:
    """What an exclusive action's result tells subscribers: a list of
    changes, one change, or (None: maintenance such as retention) nothing."""
    if result is None:
        return []
    return result if isinstance(result, list) else [result]


@dataclass
class Committed:
    """What one group's transaction did."""

    unique: list[ActivityEvent]  # the group without repeated ids, first one kept
    inserted: set[str]  # ids stored by this transaction
    earlier: dict[str, datetime]  # the others: when they were first received
    changed: list  # alerts and incidents created or changed


class GroupCommit:
    """Stores a group of events and runs detection on the new ones, with
    the notifications of what changed, in ONE transaction. The ingest
    writer thread and the event-log workers both commit through this, so
    a stored event and what detection learned from it never diverge."""

    def __init__(self, store: WriteStore, analysis: Analysis | None, outbox: Outbox | None):
        self.store = store
        self.analysis = analysis
        self.outbox = outbox
        # An event-log worker's guard (uba.domain.erasure.Tombstones): first
        # in each transaction, the group's events it lets through. None in
        # one process: every event is stored.
        self.admit: Callable[[Any, list[ActivityEvent]], list[ActivityEvent]] | None = None

    def commit(
        self,
        events: Sequence[ActivityEvent],
        received_at: datetime,
        before_commit: Callable[[], None] | None = None,
    ) -> Committed:
        """Raises what storage raised, after forgetting the cached state the
        failed transaction had changed. `before_commit` runs last inside the
        transaction (telemetry's commit timer)."""
        seen: set[str] = set()
        unique: list[ActivityEvent] = []
        for e in events:
            if e.event_id not in seen:
                seen.add(e.event_id)
                unique.append(e)
        changed: list = []
        try:
            with self.store.unit_of_work() as uow:
                admitted = unique if self.admit is None else self.admit(uow, unique)
                inserted, earlier = (
                    uow.store_events(admitted, received_at) if admitted else (set(), {})
                )
                if self.analysis is not None and inserted:
                    changed = self.analysis.process(
                        uow, [e for e in unique if e.event_id in inserted]
                    )
                    self.enqueue(uow, changed)
                if before_commit is not None:
                    before_commit()
        except BaseException:
            if self.analysis is not None:
                self.analysis.rollback()
            raise
        return Committed(unique, inserted, earlier, changed)

    def enqueue(self, uow: IngestTransaction, changed: list) -> None:
        """In the transaction: the notifications of every change it made
        (the analysis knows them all, also those a workflow action makes
        besides its result), delivered exactly when the changes commit."""
        if self.analysis is not None:
            changed = self.analysis.take_changes()
        if self.outbox is not None and changed:
            self.outbox.enqueue(uow, changed)


@dataclass
class _Job:
    events: list[ActivityEvent]
    future: Future
    # Instead of events: work that must run on the writer thread, in its own
    # transaction (the alert workflow changes baselines the writer owns).
    action: Callable[[IngestTransaction], Any] | None = None
    # The submitting call's trace context (WriterTelemetry.capture).
    trace: Any = None


class IngestService:
    """Validates events and hands valid ones to the sink: by default its own
    group-commit writer, or an event log (`sink`). Workflow actions
    (`run_exclusive`) always run on the writer thread."""

    def __init__(
        self,
        store: WriteStore,
        analysis: Analysis | None = None,
        on_committed: Callable[[list], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        max_group_events: int = 2000,
        max_pending_events: int = 100_000,
        linger: float = 0.001,
        outbox: Outbox | None = None,
        telemetry: WriterTelemetry | None = None,
        sink: EventSink | None = None,
    ):
        self._store = store
        self.telemetry: WriterTelemetry = telemetry or _Quiet()
        self._analysis = analysis
        self._commit = GroupCommit(store, analysis, outbox)
        self._sink = sink
        # Told about the alerts each commit created or changed (the broker).
        self.on_committed = on_committed
        self._clock = clock
        self._max_group = max_group_events
        self._max_pending = max_pending_events
        self._linger = linger
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="uba-writer", daemon=True)
        self._writer.start()

    # -- the calls the API layer makes -------------------------------------

    def prepare(
        self, events: Sequence[ActivityEvent], prefix: Callable[[int], str]
    ) -> list[RecordOutcome | None]:
        """Validates each event and assigns missing ids. Returns, per event,
        an INVALID outcome or None for valid ones."""
        now = self._clock()
        outcomes: list[RecordOutcome | None] = []
        for i, event in enumerate(events):
            problems = validate_event(event, prefix(i), now)
            if problems:
                outcomes.append(
                    RecordOutcome(event.event_id, RecordStatus.INVALID, violations=tuple(problems))
                )
                continue
            if not event.event_id:
                event.event_id = new_uuid7()
            outcomes.append(None)
        return outcomes

    def record_one(self, event: ActivityEvent) -> Future:
        """Validates and submits one event; raises InvalidArgument at once.
        The future resolves to a one-item list of RecordOutcome once the
        event is committed."""
        (outcome,) = self.prepare([event], lambda _: "event")
        if outcome is not None:
            raise InvalidArgument(outcome.violations)
        return self.submit([event])

    def record_batch(
        self, events: Sequence[ActivityEvent]
    ) -> tuple[list[RecordOutcome | None], Future | None]:
        """Validates and submits a batch: invalid items are reported, not
        stored, and do not stop the valid ones. Returns the validation
        outcomes and the future of the valid items' outcomes (None when no
        item is valid); `merge` combines them in request order."""
        prepared = self.prepare(events, lambda i: f"events[{i}]")
        valid = [e for e, o in zip(events, prepared, strict=True) if o is None]
        return prepared, (self.submit(valid) if valid else None)

    @staticmethod
    def merge(
        prepared: list[RecordOutcome | None], stored: list[RecordOutcome] | None
    ) -> list[RecordOutcome]:
        it = iter(stored or ())
        return [o if o is not None else next(it) for o in prepared]

    @property
    def outbox(self) -> Outbox | None:
        return self._commit.outbox

    def admit_with(
        self, admit: Callable[[Any, list[ActivityEvent]], list[ActivityEvent]] | None
    ) -> None:
        """An event-log worker's guard on what its transactions store
        (GroupCommit.admit)."""
        self._commit.admit = admit

    @property
    def detects_locally(self) -> bool:
        """False when events go to a sink: this process's detection state
        learns nothing and must not overwrite what the workers saved."""
        return self._sink is None

    def submit(self, events: list[ActivityEvent]) -> Future:
        """Hands valid events to the sink, or queues them for the writer.
        Refuses work past the pending bound rather than queueing without
        limit."""
        if self._sink is not None:
            return self._sink.submit(events)
        with self._pending_lock:
            if self._pending + len(events) > self._max_pending:
                raise ResourceExhausted("ingest queue is full; retry shortly", retry_after=0.5)
            self._pending += len(events)
        job = _Job(list(events), Future(), trace=self.telemetry.capture())
        self._queue.put(job)
        return job.future

    @property
    def pending(self) -> int:
        """Events submitted and not yet written (the writer queue's depth)."""
        return self._pending

    def run_exclusive(self, action: Callable[[IngestTransaction], Any]) -> Future:
        """Runs `action(uow)` on the writer thread in its own transaction;
        the future resolves to its result once committed. If the result is an
        alert (or a list of them), subscribers are told after the commit."""
        job = _Job([], Future(), action)
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        """Stops the writer after it has written everything queued."""
        self._queue.put(None)
        self._writer.join()

    # -- the writer thread --------------------------------------------------

    def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            if first.action is not None:
                self._run_action(first)
                continue
            jobs = [first]
            count = len(first.events)
            # Gather what arrives within the linger, up to the group limit:
            # a commit costs about the same for one event as for hundreds.
            # The limit (two full batches) keeps the pipeline going: while
            # this group is stored, the event loop converts the next
            # requests (docs/design.md, group commit).
            deadline = time.monotonic() + self._linger
            held: _Job | None = None
            while count < self._max_group:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                if job.action is not None:
                    held = job  # runs after this group, keeping the order
                    break
                jobs.append(job)
                count += len(job.events)
            self._write_group(jobs)
            with self._pending_lock:
                self._pending -= count
            if held is not None:
                self._run_action(held)

    def _run_action(self, job: _Job) -> None:
        action = job.action
        if action is None:  # callers pass only jobs that carry an action
            return
        try:
            with self._store.unit_of_work() as uow:
                result = action(uow)
                self._commit.enqueue(uow, _changes(result))
        except Exception as exc:
            if self._analysis is not None:
                self._analysis.rollback()
            if not isinstance(exc, DomainError):
                log.exception("writer action failed")
                exc = Unavailable(f"storage unavailable: {type(exc).__name__}; retry")
            job.future.set_exception(exc)
            return
        job.future.set_result(result)
        self._notify(_changes(result))

    def _notify(self, changed: list) -> None:
        if self.on_committed is not None and changed:
            try:
                self.on_committed(changed)
            except Exception:  # a subscriber problem must not stop ingest
                log.exception("alert notification failed")

    def _write_group(self, jobs: list[_Job]) -> None:
        received_at = self._clock()
        events = [e for job in jobs for e in job.events]
        try:
            with self.telemetry.group([j.trace for j in jobs], len(events)) as group:
                done = self._commit.commit(events, received_at, before_commit=group.committing)
                group.committed()
        except Exception as exc:  # the database is down or refused the write
            log.exception("storing %d events failed", len(events))
            error = Unavailable(
                f"storage unavailable: {type(exc).__name__}; retry with the same event_id"
            )
            for job in jobs:
                job.future.set_exception(error)
            return
        inserted, earlier = done.inserted, done.earlier
        first_claimed: set[str] = set()
        for job in jobs:
            results = []
            for e in job.events:
                if e.event_id in inserted and e.event_id not in first_claimed:
                    first_claimed.add(e.event_id)
                    e.received_at = received_at
                    results.append(RecordOutcome(e.event_id, RecordStatus.ACCEPTED, received_at))
                else:
                    results.append(
                        RecordOutcome(
                            e.event_id, RecordStatus.DUPLICATE, earlier.get(e.event_id, received_at)
                        )
                    )
            job.future.set_result(results)
        self._notify(done.changed)
