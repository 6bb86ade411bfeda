"""Awaiting work done on other threads, with one event-loop wake-up per burst.

`asyncio.wrap_future` wakes the loop once per future; under load the ingest
writer completes dozens of callers at once, and those wake-ups cost more
than the calls themselves. The bridge queues completions and wakes the loop
once for all that arrived together.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


def running_on(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether this thread runs `loop` (rather than a writer or storage
    thread, which runs none)."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class LoopBridge:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._lock = threading.Lock()
        self._done: list[tuple[asyncio.Future, Future]] = []

    def wait(self, future: Future[T]) -> asyncio.Future[T]:
        """An awaitable that completes like `future` (resolved on the loop)."""
        waiter = self._loop.create_future()
        future.add_done_callback(lambda f: self._completed(waiter, f))
        return waiter

    def _completed(self, waiter: asyncio.Future, future: Future) -> None:
        with self._lock:
            self._done.append((waiter, future))
            first = len(self._done) == 1
        if first:
            if running_on(self._loop):
                # Completed on the loop itself (the event log's publishes):
                # no need to wake it through its self-pipe.
                self._loop.call_soon(self._resolve)
            else:
                self._loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        with self._lock:
            done, self._done = self._done, []
        for waiter, future in done:
            if waiter.cancelled():
                continue
            exc = future.exception()
            if exc is not None:
                waiter.set_exception(exc)
            else:
                waiter.set_result(future.result())
