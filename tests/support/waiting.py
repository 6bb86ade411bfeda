"""Polling for a condition that other processes make true."""

from __future__ import annotations

import time


def wait_for(condition, timeout: float, what: str) -> None:
    """Polls `condition` until it holds; fails naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
