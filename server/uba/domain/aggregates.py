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

import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from uba.domain.priors import Contribution, SharedPriors
from uba.domain.shared_state import KeyedWindows

log = logging.getLogger(__name__)

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
    through the event log (the adapter: uba.eventlog.aggregates): entries
    of the peer windows, erasures, and the shares of baselines that turned
    mature (the priors, uba.domain.priors.SharedPriors)."""

    def take(self) -> list[Delta]:
        """The entries added here since the last call (any thread)."""

    def take_erased(self) -> list[str]:
        """The pseudonyms of the users erased here since the last call
        (any thread): the other workers drop their entries."""

    def take_shares(self) -> list[Contribution]:
        """The shares of the baselines that turned mature here since the
        last call (any thread)."""

    def receive(
        self,
        deltas: Sequence[Delta],
        erased: Sequence[str] = (),
        shares: Sequence[Contribution] = (),
        position: int = 0,
    ) -> None:
        """What one message of the log carries (at `position`, its place
        in the log), in the log's order (any thread); merged before the
        next events are analysed. The entries and erasures are the other
        workers'; the shares are everyone's, this worker's too."""

    def positions_end(self, last: int) -> None:
        """Before the first `receive`: the last position of the log now."""


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

    def __init__(self, shape: Shape, priors: SharedPriors | None = None):
        self._shape = shape
        self._windows: dict[str, AggregateWindows] = {}
        self._journal: deque[Delta] = deque()
        self._erased: deque[str] = deque()
        self._inbox: deque[_Received] = deque()
        self.merged = 0  # entries of other workers merged, for the logs
        # The workers' shared priors, pooled in the log's order (None: the
        # priors are not exchanged).
        self.priors = priors
        # The pseudonym of a user id (uba.domain.erasure.pseudonym under the
        # database's secret): erasures travel by pseudonym, not by id.
        self.pseudonym: Callable[[str], str] | None = None

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
        return _drain(self._journal)

    def take_erased(self) -> list[str]:
        return _drain(self._erased)

    def take_shares(self) -> list[Contribution]:
        return self.priors.take() if self.priors is not None else []

    def receive(
        self,
        deltas: Sequence[Delta],
        erased: Sequence[str] = (),
        shares: Sequence[Contribution] = (),
        position: int = 0,
    ) -> None:
        if deltas or erased or shares or position:
            self._inbox.append(_Received(deltas, erased, shares, position))

    def positions_end(self, last: int) -> None:
        if self.priors is not None and self.priors.position > last:
            # Saved as of a stream that was deleted since (positions never
            # go back): the pool stays, the positions count from the start.
            log.warning(
                "aggregates: the priors were saved at position %d of a stream that ends at %d "
                "now; pooling the shares from its start",
                self.priors.position,
                last,
            )
            self.priors.position = 0

    # -- erasure --------------------------------------------------------------------

    def forget(self, user_id: str, alias: str) -> int:
        """Erasure on this worker: drops the user's entries, and hands the
        pseudonym out so that the other workers drop theirs."""
        dropped = sum(windows.forget(user_id) for windows in self._windows.values())
        if alias:
            self._erased.append(alias)
        log.info("aggregates: dropped %d entries of an erased user", dropped)
        return dropped

    def _forget_alias(self, alias: str) -> int:
        """Another worker erased a user: drops the entries of whoever has
        that pseudonym (each user id seen is hashed once)."""
        if self.pseudonym is None:
            log.warning("aggregates: an erasure came before the pseudonym secret; not applied")
            return 0
        users: set[str] = set()
        for windows in self._windows.values():
            users.update(windows.values())
        erased = [u for u in users if self.pseudonym(u) == alias]
        dropped = sum(w.forget(u) for u in erased for w in self._windows.values())
        log.info("aggregates: dropped %d entries of an erased user", dropped)
        return dropped

    @property
    def received(self) -> int:
        """Batches received and not merged yet."""
        return len(self._inbox)

    def merge_received(self) -> int:
        """Merges what the log brought, in its order (on the writer thread):
        the other workers' entries, then their erasures, and everyone's
        shares of the priors; returns how many entries were new here."""
        inbox = self._inbox
        new = 0
        while inbox:
            received = inbox.popleft()
            for delta in received.deltas:
                windows = self._named(delta.window)
                if windows is not None and windows.merge(delta.key, delta.ts, delta.user):
                    new += 1
            for alias in received.erased:
                self._forget_alias(alias)
            if self.priors is not None and received.position:
                self.priors.absorb(received.position, received.shares)
        self.merged += new
        return new


class _Received(NamedTuple):
    deltas: Sequence[Delta]
    erased: Sequence[str]
    shares: Sequence[Contribution]
    position: int


def _drain(queue: deque) -> list:
    """Everything in `queue`, taken from its front: safe while another
    thread appends."""
    taken = []
    while queue:
        taken.append(queue.popleft())
    return taken
