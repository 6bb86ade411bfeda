"""Detection by partition, for the workers of a partitioned event log
(uba.eventlog, docs/scaling.md).

A worker owns partitions of two kinds, and hands each kind's messages to
one of these:

- `UserPartitions`: a partition holds whole users' events. They go to the
  ingest writer (GroupCommit: store them, run the user detectors, alerts,
  all in one transaction) as in the embedded mode; the detector windows
  are kept per partition (`Analyzer.partition_state`), so that two workers
  never overwrite each other's, except the population aggregates (peer
  windows), which all user partitions of all workers share
  (uba.domain.aggregates: this is the exchange's end in the domain).
- `PopulationPartitions`: a partition holds copies of events re-keyed by
  what a population detector counts (a source address; the organisation,
  one key). Its owner runs those detectors alone on them, in transactions
  of its own that record each event as applied (`mark_applied`): a copy
  delivered again (a worker died before acknowledging it, a lease moved)
  is recognised and not analysed twice, so it never makes a second anomaly.

A partition given back has its windows saved for the next owner first; a
partition lost (another worker took it over) has them dropped unsaved.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, Protocol

from uba.domain.aggregates import Aggregates, Delta
from uba.domain.analysis import SHARED_STATE, Analyzer
from uba.domain.erasure import ErasurePart, ErasureRequest, ErasureService, Tombstones, pseudonym
from uba.domain.events import ActivityEvent
from uba.domain.ingest import IngestService, Outbox, utcnow
from uba.domain.peers import aggregate_shape
from uba.domain.priors import Contribution

log = logging.getLogger(__name__)

# How long a population partition remembers the events it analysed: a copy
# delivered again later than this (a client retrying days after) would be
# analysed again.
KEEP_APPLIED = timedelta(days=7)
PRUNE_EVERY = timedelta(hours=1)


class PartitionWork(Protocol):
    """What a worker of the event log does with the partitions it owns."""

    def start(self, partition_of: Callable[[str], int]) -> None:
        """Before any message: how keys map to partitions."""

    def submit(
        self, partition: int, events: list[ActivityEvent], positions: Sequence[int] | None = None
    ) -> Future:
        """Stores or analyses a batch of the partition (`positions`: each
        event's place in the partition, for the erasures' tombstones); the
        future resolves once it is committed (then the messages may be
        acknowledged)."""

    def erase(self, partition: int, request: ErasureRequest, position: int) -> Future:
        """Applies the erasure the partition holds at `position`, once; the
        future resolves once it is committed."""

    def release(self, partition: int) -> Future:
        """The partition is given back: save what belongs to it."""

    def drop(self, partition: int) -> Future:
        """The partition was taken over: forget what belongs to it."""

    def close(self) -> None: ...


def _done() -> Future:
    future: Future = Future()
    future.set_result(None)
    return future


def user_state_key(partition: int) -> str:
    return f"p{partition}"


class UserPartitions:
    """User partitions: events to the ingest writer; windows per partition,
    but for the population aggregates, which it exchanges with the other
    workers (an AggregateExchange)."""

    def __init__(
        self,
        ingest: IngestService,
        analyzer: Analyzer | None,
        clock: Callable[[], datetime] = utcnow,
    ):
        self._ingest = ingest
        self._analyzer = analyzer
        self.aggregates = Aggregates(aggregate_shape) if analyzer is not None else None
        self._merging = False  # a merge is queued on the writer thread
        self.tombstones = Tombstones(clock)
        ingest.admit_with(self.tombstones.admit)
        self._erasure = ErasureService(ingest, analyzer, clock)
        # Erasures wait on the writer's transactions one after another.
        self._eraser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uba-erasure")

    def prepare(self) -> Future:
        """Before the log is read (on the writer thread): the pseudonyms
        erasures travel by, and the priors the workers pool through the
        log, as last saved (uba.domain.priors.SharedPriors)."""
        analyzer, aggregates = self._analyzer, self.aggregates

        def setup(uow: Any) -> None:
            secret = uow.retention.pseudonym_secret()
            if aggregates is not None:
                aggregates.pseudonym = functools.partial(pseudonym, secret)
                if analyzer is not None and analyzer.learns_baselines:
                    aggregates.priors = analyzer.share_priors(uow)

        return self._ingest.run_exclusive(setup)

    def start(self, partition_of: Callable[[str], int]) -> None:
        if self._analyzer is not None:
            self._analyzer.partition_state(
                lambda e: user_state_key(partition_of(e.user_id)), self.aggregates
            )

    def take(self) -> list[Delta]:
        return self.aggregates.take() if self.aggregates is not None else []

    def take_erased(self) -> list[str]:
        return self.aggregates.take_erased() if self.aggregates is not None else []

    def take_shares(self) -> list[Contribution]:
        return self.aggregates.take_shares() if self.aggregates is not None else []

    def positions_end(self, last: int) -> None:
        if self.aggregates is not None:
            self.aggregates.positions_end(last)

    def receive(
        self,
        deltas: Sequence[Delta],
        erased: Sequence[str] = (),
        shares: Sequence[Contribution] = (),
        position: int = 0,
    ) -> None:
        """Merged before the next group is analysed, or now when the writer
        is idle (so that what waits stays small)."""
        aggregates = self.aggregates
        if aggregates is None:
            return
        aggregates.receive(deltas, erased, shares, position)
        if not self._merging:
            self._merging = True
            self._ingest.run_exclusive(self._merge).add_done_callback(self._merged)

    def _merge(self, uow: object) -> None:
        self._merging = False
        if self.aggregates is not None:
            self.aggregates.merge_received()

    def _merged(self, future: Future) -> None:
        if future.exception() is not None:  # no transaction now: the next group merges
            self._merging = False

    def submit(
        self, partition: int, events: list[ActivityEvent], positions: Sequence[int] | None = None
    ) -> Future:
        if positions is not None:
            self.tombstones.expect(user_state_key(partition), events, positions)
        return self._ingest.submit(events)

    def erase(self, partition: int, request: ErasureRequest, position: int) -> Future:
        key = user_state_key(partition)
        return self._eraser.submit(self._erasure.apply, request, ErasurePart(key, position), (key,))

    def release(self, partition: int) -> Future:
        analyzer = self._analyzer
        if analyzer is None:
            return _done()
        # On the writer thread, which owns the analyzer, after what it holds.
        # (The store's write transaction is the analyzer's too; uba.domain.ingest
        # types it only by its store_events, as in Services.close.)
        return self._ingest.run_exclusive(
            lambda uow: analyzer.release_state(uow, user_state_key(partition))  # type: ignore[arg-type]
        )

    def drop(self, partition: int) -> Future:
        analyzer = self._analyzer
        if analyzer is None:
            return _done()
        return self._ingest.run_exclusive(
            lambda uow: analyzer.drop_state(user_state_key(partition))
        )

    def close(self) -> None:
        # (The services' close checkpoints the analyzer.)
        self._eraser.shutdown(wait=True)


class KeyedDetector(Protocol):
    def population_key(self, event: ActivityEvent) -> str | None: ...


class AppliedStorage(Protocol):
    def mark_applied(self, scope: str, event_ids: Sequence[str], now: datetime) -> set[str]: ...
    def prune_applied(self, before: datetime) -> int: ...


class PopulationTransaction(Protocol):
    @property
    def detection(self) -> AppliedStorage: ...


class PopulationStore(Protocol):
    def transaction(self) -> AbstractContextManager[Any]:
        """A write transaction of its own (not the ingest writer's)."""


# Builds the analyzer of a population partition: an engine of the
# population detectors taking what `accept` says, and its state row.
AnalyzerFactory = Callable[[int, Callable[[ActivityEvent, KeyedDetector], bool], str], Analyzer]


def population_scope(partition: int) -> str:
    return f"population.{partition}"


class PopulationPartitions:
    """Population partitions: the population detectors on re-keyed copies.

    Each owned partition has its own analyzer and windows (state row
    `detector_windows.population.<p>`), loaded when its first batch comes.
    The batches of all of them are committed one at a time on a thread of
    their own (not the ingest writer's: the user partitions go on)."""

    def __init__(
        self,
        store: PopulationStore,
        make_analyzer: AnalyzerFactory | None,
        outbox: Outbox | None,
        clock: Callable[[], datetime],
    ):
        self._store = store
        self._make = make_analyzer  # None: detection is off; the copies are only drained
        self._outbox = outbox
        self._clock = clock
        self._partition_of: Callable[[str], int] | None = None
        self._analyzers: dict[int, Analyzer] = {}
        self._pruned: datetime | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uba-population")
        self._tombstones = Tombstones(clock)
        # Told of the alert and incident changes of each committed batch,
        # as IngestService.on_committed is (the event log's fan-out).
        self.on_committed: Callable[[list], None] | None = None

    def start(self, partition_of: Callable[[str], int]) -> None:
        self._partition_of = partition_of

    def _analyzer(self, partition: int) -> Analyzer:
        assert self._make is not None and self._partition_of is not None
        partition_of = self._partition_of

        def accept(event: ActivityEvent, detector: KeyedDetector) -> bool:
            # The event's copy on this partition is this detector's to see
            # when the detector's key of it falls here (an event has a copy
            # on each partition one of its keys falls in).
            key = detector.population_key(event)
            return key is not None and partition_of(key) == partition

        return self._make(partition, accept, f"{SHARED_STATE}.{population_scope(partition)}")

    def submit(
        self, partition: int, events: list[ActivityEvent], positions: Sequence[int] | None = None
    ) -> Future:
        return self._thread.submit(self._commit, partition, events, positions)

    def _commit(
        self, partition: int, events: list[ActivityEvent], positions: Sequence[int] | None
    ) -> None:
        if self._make is None:
            return
        now = self._clock()
        analyzer = self._analyzers.get(partition)
        changes: list = []
        try:
            with self._store.transaction() as uow:
                if positions is not None:
                    # Copies of an erased user's events from before the
                    # erasure, delivered again after it: dropped.
                    scope = population_scope(partition)
                    where: dict[str, tuple[str, int]] = {}
                    for event, position in zip(events, positions, strict=True):
                        known = where.get(event.event_id)
                        if known is None or known[1] < position:
                            where[event.event_id] = (scope, position)
                    events = self._tombstones.filter(uow, events, where)
                if analyzer is None:
                    analyzer = self._analyzer(partition)
                    analyzer.load_state(uow)
                    self._analyzers[partition] = analyzer
                fresh = uow.detection.mark_applied(
                    population_scope(partition), [e.event_id for e in events], now
                )
                if fresh:
                    seen: set[str] = set()
                    new = []
                    for e in events:
                        if e.event_id in fresh and e.event_id not in seen:
                            seen.add(e.event_id)
                            new.append(e)
                    # Also checkpoints the windows, now and then.
                    analyzer.process(uow, new)
                    changes = analyzer.take_changes()
                    if self._outbox is not None and changes:
                        self._outbox.enqueue(uow, changes)
                if self._pruned is None or now - self._pruned >= PRUNE_EVERY:
                    uow.detection.prune_applied(now - KEEP_APPLIED)
                    self._pruned = now
        except BaseException:
            # The windows learnt what the transaction did not keep: reload
            # them from the last checkpoint rather than count twice.
            self._analyzers.pop(partition, None)
            if analyzer is not None:
                analyzer.rollback()
            raise
        if self.on_committed is not None and changes:
            try:
                self.on_committed(changes)
            except Exception:  # a subscriber problem must not stop detection
                log.exception("alert notification failed")

    def erase(self, partition: int, request: ErasureRequest, position: int) -> Future:
        """Also with detection off: what the partition's detectors wrote
        of the user before is rewritten all the same."""
        return self._thread.submit(self._erase, partition, request, position)

    def _erase(self, partition: int, request: ErasureRequest, position: int) -> None:
        analyzer = self._analyzers.get(partition)
        try:
            with self._store.transaction() as uow:
                if analyzer is None and self._make is not None:
                    # Its windows, as last saved, are saved without the user.
                    analyzer = self._analyzer(partition)
                    analyzer.load_state(uow)
                    self._analyzers[partition] = analyzer
                ErasureService(None, analyzer, self._clock).apply_in(
                    uow, request, ErasurePart(population_scope(partition), position)
                )
        except BaseException:
            self._analyzers.pop(partition, None)
            if analyzer is not None:
                analyzer.rollback()
            raise

    def release(self, partition: int) -> Future:
        return self._thread.submit(self._release, partition)

    def _release(self, partition: int) -> None:
        analyzer = self._analyzers.pop(partition, None)
        if analyzer is not None:
            with self._store.transaction() as uow:
                analyzer.checkpoint(uow, force=True)

    def drop(self, partition: int) -> Future:
        return self._thread.submit(self._analyzers.pop, partition, None)

    def close(self) -> None:
        """Saves the windows of the partitions still held, then stops."""
        self._thread.submit(self._release_all).result()
        self._thread.shutdown(wait=True)

    def _release_all(self) -> None:
        for partition in list(self._analyzers):
            try:
                self._release(partition)
            except Exception:  # noqa: BLE001 - losing them costs one window of detection
                log.warning("could not save the windows of population partition %d", partition)
