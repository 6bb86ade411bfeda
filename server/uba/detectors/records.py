"""Per-key mutable records in the shared detector state, checkpointed with
the windows.

A window (uba.domain.shared_state) appends one entry per event; a detector that
keeps running totals (bytes per day, a cumulative sum, an organisation's
failure baseline) needs one small record per key, changed in place in O(1).
`RecordStore` keeps such records (JSON-able lists) in memory, bounded in
keys with the least recently touched evicted first, and writes them in the
windows' checkpoint format (one (ts, JSON text) entry per key), so
`SharedState.to_dict`/`from_dict` carry them unchanged; `records` turns a
restored copy back into a store on first use.
"""

from __future__ import annotations

import json
from typing import Any

from uba.domain.shared_state import KeyedWindows, SharedState, make_room, names


class RecordStore(KeyedWindows):
    """Records by key, least recently touched first. Not a window: it only
    shares the checkpoint format."""

    __slots__ = ("_records",)

    def __init__(self, max_keys: int = 100_000):
        super().__init__(0.0, max_keys, 1)
        self._records: dict[str, list] = {}

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> list | None:
        """The record of `key` (mutate it in place), or None."""
        return self._records.get(key)

    def limit(self, max_keys: int) -> None:
        self.max_keys = max_keys
        make_room(self._records, max_keys, exact=True)

    def put(self, key: str, record: list) -> list:
        records = self._records
        if key not in records and len(records) >= self.max_keys:
            make_room(records, self.max_keys)
        records.pop(key, None)
        records[key] = record  # now the most recently touched
        return record

    def touch(self, key: str) -> None:
        record = self._records.pop(key, None)
        if record is not None:
            self._records[key] = record

    def clear(self, key: str) -> None:
        self._records.pop(key, None)

    def forget(self, name: str) -> int:
        doomed = [key for key in self._records if names(key, name)]
        for key in doomed:
            del self._records[key]
        return len(doomed)

    def keys(self) -> list[str]:
        return list(self._records)

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_seconds": 0.0,
            "max_keys": self.max_keys,
            "max_events_per_key": 1,
            "keys": {
                key: [(0.0, json.dumps(record, separators=(",", ":")))]
                for key, record in self._records.items()
            },
        }

    @classmethod
    def from_windows(cls, windows: KeyedWindows) -> RecordStore:
        store = cls(windows.max_keys)
        for key, window in windows._windows.items():  # noqa: SLF001 (restoring our own format)
            if window.events:
                try:
                    record = json.loads(window.events[-1][1])
                except (TypeError, ValueError):
                    continue  # not ours after all: start that key afresh
                if isinstance(record, list):
                    store._records[key] = record
        return store


def records(shared: SharedState, name: str, max_keys: int = 100_000) -> RecordStore:
    """The record store called `name` in `shared`, created on first use or
    rebuilt from a checkpoint. SharedState hands out windows only, so the
    store takes its slot under the same name."""
    current = shared.windows(name, 0.0, max_keys, 1)
    if isinstance(current, RecordStore):
        return current  # shared.windows applied max_keys
    store = RecordStore.from_windows(current)
    store.limit(max_keys)
    shared._windows[name] = store  # noqa: SLF001 (no public setter; see module docstring)
    return store
