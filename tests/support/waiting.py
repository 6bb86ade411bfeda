"""Polling for a condition that other processes make true."""

from __future__ import annotations

import time


def wait_for(condition, timeout: float, what: str, show=None) -> None:
    """Polls `condition` until it holds; fails naming `what` after `timeout` s
    (with what `show()` returns, such as a process's last log lines)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            seen = f"; seen: {show()}" if show is not None else ""
            raise AssertionError(f"timed out waiting for {what}{seen}")
        time.sleep(0.2)
