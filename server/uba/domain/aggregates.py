"""Population aggregates shared by the user partitions of the event log's
workers (docs/scaling.md, "Population aggregates").

A worker of the event log holds whole users per partition, so what a user
detector keeps per user is complete in its partition. The peer windows
(uba.domain.peers: who else uses a value, who adopted it, who is active)
are not: their keys are shared by many users, and counted per partition
they would hold 1/N of the population. They are unions of (window, key,
user, time) entries, though, so they merge: each worker keeps ONE set of
these windows for all its user partitions (`Aggregates`, given to each
partition's SharedState as its `aggregates`), hands what its partitions add
to the event log (`take`), and merges what the others added (`receive`,
applied on the writer thread before the next group is analysed).

Merging is idempotent and order-independent: an entry is added unless the
user is already in that key's window (as the detectors themselves add
them), at its place in time. A user's entries come from one partition, so
every worker ends with the same windows as an embedded server that saw
every event, up to what is still in flight. The caps are those of the
windows, so memory is bounded as for one embedded server.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from uba.domain.shared_state import KeyedWindows

# (span in seconds, max keys, max values per key) of an aggregate window by
# name, None for windows that are not aggregates (uba.domain.peers.aggregate_shape).
Shape = Callable[[str], "tuple[float, int, int] | None"]


class Delta(NamedTuple):
    """One entry a partition added to an aggregate window."""

    window: str
    key: str
    user: str
    ts: float


class AggregateExchange(Protocol):
    """What a worker's user partitions exchange with the other workers
    through the event log (the adapter: uba.eventlog.aggregates)."""

    def take(self) -> list[Delta]:
        """The entries added here since the last call (any thread)."""

    def receive(self, deltas: Sequence[Delta]) -> None:
        """Entries other workers added (any thread); merged before the
        next events are analysed."""


class AggregateWindows(KeyedWindows):
    """Keyed windows of user ids shared by every partition of a worker: what
    the detectors add is journaled, what comes from elsewhere is merged; both
    at their place in time."""

    __slots__ = ("name", "_journal")
    shared = True

    def __init__(
        self,
        name: str,
        journal: deque[Delta],
        window_seconds: float,
        max_keys: int,
        max_events_per_key: int,
    ):
        super().__init__(window_seconds, max_keys, max_events_per_key)
        self.name = name
        self._journal = journal

    def add(self, key: str, ts: float, value: str = "") -> None:
        self.insert(key, ts, value)
        self._journal.append(Delta(self.name, key, value, ts))

    def merge(self, key: str, ts: float, user: str) -> bool:
        """Adds an entry from elsewhere unless the user is in the key's window."""
        if self.has_value(key, user, ts):
            return False
        self.insert(key, ts, user)
        return True


class Aggregates:
    """One worker's population aggregates, shared by its user partitions.

    The windows belong to the writer thread (like every detector window);
    `take` and `receive` may be called from any thread (the event log's
    loop): they only move lists through deques."""

    def __init__(self, shape: Shape):
        self._shape = shape
        self._windows: dict[str, AggregateWindows] = {}
        self._journal: deque[Delta] = deque()
        self._inbox: deque[Sequence[Delta]] = deque()
        self.merged = 0  # entries of other workers merged, for the logs

    # -- the windows (a SharedState's WindowSource) ----------------------------------

    def windows(
        self, name: str, window_seconds: float, max_keys: int, max_events_per_key: int
    ) -> AggregateWindows | None:
        windows = self._windows.get(name)
        if windows is None:
            if self._shape(name) is None:
                return None
            windows = self._windows[name] = AggregateWindows(
                name, self._journal, window_seconds, max_keys, max_events_per_key
            )
        elif windows.window_seconds != window_seconds:
            windows.window_seconds = float(window_seconds)
        return windows

    def adopt(self, name: str, windows: KeyedWindows) -> None:
        """Entries a partition saved in its own row before aggregates were
        shared: merged, and handed out as this worker's own."""
        target = self.windows(
            name, windows.window_seconds, windows.max_keys, windows.max_events_per_key
        )
        if target is None:
            return
        for key, entries in windows.to_dict()["keys"].items():
            for ts, user in entries:
                if target.merge(key, ts, user):
                    self._journal.append(Delta(name, key, user, ts))

    def _named(self, name: str) -> AggregateWindows | None:
        windows = self._windows.get(name)
        if windows is None:
            shape = self._shape(name)
            if shape is None:
                return None  # not an aggregate here (another version's window)
            windows = self.windows(name, *shape)
        return windows

    # -- the exchange ---------------------------------------------------------------

    def take(self) -> list[Delta]:
        journal = self._journal
        taken: list[Delta] = []
        while journal:
            taken.append(journal.popleft())
        return taken

    def receive(self, deltas: Sequence[Delta]) -> None:
        if deltas:
            self._inbox.append(deltas)

    @property
    def received(self) -> int:
        """Batches received and not merged yet."""
        return len(self._inbox)

    def merge_received(self) -> int:
        """Merges what other workers sent (on the writer thread); returns
        how many entries were new here."""
        inbox = self._inbox
        new = 0
        while inbox:
            for delta in inbox.popleft():
                windows = self._named(delta.window)
                if windows is not None and windows.merge(delta.key, delta.ts, delta.user):
                    new += 1
        self.merged += new
        return new
