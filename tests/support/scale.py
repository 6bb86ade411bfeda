"""Sizes of the fault tests, larger behind a flag.

UBA_FAULT_SCALE (an integer >= 1, default 1) multiplies the sizes of the
tests in tests/faults/: events, batches, rounds of faults, soak seconds,
and their pytest-timeout limits with them. `make test-faults-large` runs
them at 10. Only the tests read it; the server never sees it
(support.server.ServerProcess drops UBA_* variables).

    from support.scale import scaled, scaled_timeout
    BATCHES = scaled(60)
    pytestmark = scaled_timeout(300)
"""

from __future__ import annotations

import os

import pytest

VARIABLE = "UBA_FAULT_SCALE"
# The suite's default limit per test (pyproject.toml, [tool.pytest.ini_options] timeout).
DEFAULT_TIMEOUT = 300


def _read() -> int:
    raw = os.environ.get(VARIABLE, "").strip() or "1"
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{VARIABLE} must be an integer >= 1, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{VARIABLE} must be an integer >= 1, got {raw!r}")
    return value


SCALE = _read()


def scaled(n: int) -> int:
    """`n` times the scale factor."""
    return n * SCALE


def scaled_timeout(seconds: float = DEFAULT_TIMEOUT) -> pytest.MarkDecorator:
    """A pytest-timeout mark that grows with the sizes."""
    return pytest.mark.timeout(seconds * SCALE)
