"""Detector state shared across users: sliding windows of recent events.

A baseline answers "what is normal for this user"; a window answers "what
has happened in the last few minutes", across users when needed (one
source IP failing against many accounts). Windows are always learned, also
from quarantined events, because they count the attack itself.

Everything is bounded: a window forgets events older than its span, keeps
at most `max_events_per_key` per key and at most `max_keys` keys, evicting
the key touched least recently. Detectors derive `max_keys` of their
windows from their `max_users` (and `max_sources`, `max_values`) hyper-
parameters, which the composition root sets from --cached-users
(docs/scaling.md, "Memory and users"). Losing the state (a restart) only
delays detection by one window, so persisting it is optional; `to_dict` /
`from_dict` exist for storage that wants to.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import islice
from operator import itemgetter
from typing import Any, ClassVar, Protocol

_TS = itemgetter(0)

# The users a process keeps in memory by default (--cached-users): the
# baseline cache and every detector's per-user state hold at most this many.
CACHED_USERS = 20_000


def make_room(entries: dict, max_keys: int, exact: bool = False) -> None:
    """Evicts the least recently touched keys of `entries` (oldest first)
    until a new key fits under `max_keys` (`exact`: until at most
    `max_keys` are left). Unless exact, at least 1/64 of the bound goes at
    once: a dict finds its first key by scanning past the slots of the keys
    deleted before it, so evicting one key per new key made each eviction
    cost thousands of slots (7 us instead of 0.2 per add, measured)."""
    over = len(entries) - max_keys + (0 if exact else 1)
    if over <= 0:
        return
    if not exact:
        over = max(over, max_keys // 64)
    for key in list(islice(entries, over)):
        del entries[key]


def names(text: str, name: str) -> bool:
    """Whether a window key or value names `name`: equal to it, or one of
    its parts separated by a tab or a unit separator (sessions, peers)."""
    if name not in text:
        return False
    return text == name or name in text.replace("\x1f", "\t").split("\t")


class _Window:
    __slots__ = ("events", "values")

    def __init__(self) -> None:
        # A list, not a deque: most keys hold one or a few entries, and an
        # empty deque alone takes 760 bytes (a list of one, 88); expired
        # entries leave from the front in one slice.
        self.events: list[tuple[float, str]] = []
        # value -> occurrences in the window, for O(1) distinct counts
        self.values: dict[str, int] = {}


class KeyedWindows:
    """Per-key sliding windows of (time, value) pairs."""

    __slots__ = ("window_seconds", "max_keys", "max_events_per_key", "_windows")
    # True for windows that several SharedStates share (uba.domain.aggregates):
    # saved by their owner, not with each state.
    shared: ClassVar[bool] = False

    def __init__(
        self, window_seconds: float, max_keys: int = 100_000, max_events_per_key: int = 10_000
    ):
        self.window_seconds = float(window_seconds)
        self.max_keys = max_keys
        self.max_events_per_key = max_events_per_key
        # key -> window, least recently touched first
        self._windows: dict[str, _Window] = {}

    def __len__(self) -> int:
        return len(self._windows)

    def _current(self, key: str, now_ts: float) -> _Window | None:
        window = self._windows.get(key)
        if window is None:
            return None
        self._expire(window, now_ts)
        if not window.events:
            del self._windows[key]
            return None
        return window

    def _expire(self, window: _Window, now_ts: float) -> None:
        horizon = now_ts - self.window_seconds
        events = window.events
        if not events or events[0][0] > horizon:
            return
        values = window.values
        gone = 0
        for ts, value in events:
            if ts > horizon:
                break
            gone += 1
            left = values[value] - 1
            if left:
                values[value] = left
            else:
                del values[value]
        del events[:gone]

    def count(self, key: str, now_ts: float) -> int:
        """Events of `key` within the window ending at `now_ts`."""
        window = self._current(key, now_ts)
        return len(window.events) if window else 0

    def distinct(self, key: str, now_ts: float) -> int:
        """Distinct values of `key` within the window."""
        window = self._current(key, now_ts)
        return len(window.values) if window else 0

    def has_value(self, key: str, value: str, now_ts: float) -> bool:
        window = self._current(key, now_ts)
        return bool(window) and value in window.values  # type: ignore[union-attr]

    def latest(self, key: str, now_ts: float) -> tuple[float, str] | None:
        """The newest (time, value) of `key` within the window, or None."""
        window = self._current(key, now_ts)
        return window.events[-1] if window else None

    def limit(self, max_keys: int) -> None:
        """Bounds the keys from now on, evicting the least recently touched
        beyond it at once (a restored checkpoint may hold more)."""
        self.max_keys = max_keys
        make_room(self._windows, max_keys, exact=True)

    def add(self, key: str, ts: float, value: str = "") -> None:
        windows = self._windows
        window = windows.pop(key, None)
        if window is None:
            if len(windows) >= self.max_keys:
                make_room(windows, self.max_keys)
            window = _Window()
        else:
            self._expire(window, ts)
        window.events.append((ts, value))
        window.values[value] = window.values.get(value, 0) + 1
        if len(window.events) > self.max_events_per_key:
            _, dropped = window.events.pop(0)
            left = window.values[dropped] - 1
            if left:
                window.values[dropped] = left
            else:
                del window.values[dropped]
        windows[key] = window  # re-inserted: now the most recently touched

    def insert(self, key: str, ts: float, value: str = "") -> None:
        """As `add`, at the entry's place in time rather than last: entries
        that come out of order (merged from elsewhere) still expire in turn.
        A window filled only this way is in time order, so its place is
        found by bisection: a scan back from the newest entry cost one
        Python step per newer entry, thousands per entry when a worker
        merged entries older than most of a key's (docs/scaling.md)."""
        window = self._windows.get(key)
        events = window.events if window is not None else None
        # KeyedWindows.add, not a subclass's (that may journal what it adds).
        if not events or events[-1][0] <= ts:
            KeyedWindows.add(self, key, ts, value)
            return
        KeyedWindows.add(self, key, events[-1][0], value)  # counted and capped as any entry...
        last = events.pop()  # ...then moved to its place, after entries of the same time
        events.insert(bisect_right(events, ts, key=_TS), (ts, last[1]))

    def clear(self, key: str) -> None:
        self._windows.pop(key, None)

    def values(self) -> set[str]:
        """Every value in the windows (as of their last expiry)."""
        found: set[str] = set()
        for window in self._windows.values():
            found.update(window.values)
        return found

    def forget(self, name: str) -> int:
        """Drops every key and every entry naming `name` (a user id, alone or
        as a tab- or unit-separated part); returns how many were dropped."""
        dropped = 0
        for key in [k for k in self._windows if names(k, name)]:
            del self._windows[key]
            dropped += 1
        for window in self._windows.values():
            if any(names(value, name) for value in window.values):
                kept = [(ts, v) for ts, v in window.events if not names(v, name)]
                dropped += len(window.events) - len(kept)
                window.events = kept
                window.values = {}
                for _, v in kept:
                    window.values[v] = window.values.get(v, 0) + 1
        return dropped

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_seconds": self.window_seconds,
            "max_keys": self.max_keys,
            "max_events_per_key": self.max_events_per_key,
            # The (ts, value) tuples as they are: JSON writes them as pairs,
            # and a copy per entry would slow the writer's checkpoints
            # (docs/design.md).
            "keys": {key: list(w.events) for key, w in self._windows.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyedWindows:
        windows = cls(data["window_seconds"], data["max_keys"], data["max_events_per_key"])
        for key, events in data["keys"].items():
            window = _Window()
            for ts, value in events:
                window.events.append((ts, value))
                window.values[value] = window.values.get(value, 0) + 1
            windows._windows[key] = window
        return windows


class WindowSource(Protocol):
    """Windows that several SharedStates share (uba.domain.aggregates)."""

    def windows(
        self, name: str, window_seconds: float, max_keys: int, max_events_per_key: int
    ) -> KeyedWindows | None:
        """The shared windows called `name`, or None when `name` is not shared."""

    def adopt(self, name: str, windows: KeyedWindows) -> None:
        """Windows called `name` that a state saved before they were shared."""


class SharedState:
    """Named windows shared by all users; detectors ask for theirs by name.

    With `aggregates`, the windows it claims are not this state's own but
    shared with other states (the event log's user partitions): looked up
    there, neither saved nor loaded with this state."""

    __slots__ = ("_windows", "aggregates")

    def __init__(self, aggregates: WindowSource | None = None) -> None:
        self._windows: dict[str, KeyedWindows] = {}
        self.aggregates = aggregates

    def windows(
        self,
        name: str,
        window_seconds: float,
        max_keys: int | None = None,
        max_events_per_key: int = 10_000,
    ) -> KeyedWindows:
        """The windows called `name`, created on first use (with at most
        100,000 keys unless `max_keys` says). A changed span or a given
        `max_keys` (new configuration, or windows restored from a checkpoint
        of another configuration) applies from now on."""
        windows = self._windows.get(name)
        if windows is None:
            bound = 100_000 if max_keys is None else max_keys
            if self.aggregates is not None:
                windows = self.aggregates.windows(name, window_seconds, bound, max_events_per_key)
            if windows is None:
                windows = KeyedWindows(window_seconds, bound, max_events_per_key)
            self._windows[name] = windows
            return windows
        if windows.window_seconds != window_seconds:
            windows.window_seconds = float(window_seconds)
        if max_keys is not None and windows.max_keys != max_keys:
            windows.limit(max_keys)
        return windows

    def names(self) -> list[str]:
        return list(self._windows)

    def forget(self, user_id: str) -> int:
        """Drops the user's keys and entries from every window (erasure)."""
        return sum(windows.forget(user_id) for windows in self._windows.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            name: windows.to_dict() for name, windows in self._windows.items() if not windows.shared
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], aggregates: WindowSource | None = None) -> SharedState:
        state = cls(aggregates)
        for name, windows in data.items():
            loaded = KeyedWindows.from_dict(windows)
            if (
                aggregates is not None
                and aggregates.windows(
                    name, loaded.window_seconds, loaded.max_keys, loaded.max_events_per_key
                )
                is not None
            ):
                aggregates.adopt(name, loaded)
            else:
                state._windows[name] = loaded
        return state
