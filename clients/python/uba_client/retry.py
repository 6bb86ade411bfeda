"""Retry policy: exponential backoff with jitter, and which codes to retry."""

from __future__ import annotations

import random
from dataclasses import dataclass

import grpc

# Safe for every call: the request never reached a handler (or the server is
# draining and said so).
RETRY_DEFAULT = frozenset({grpc.StatusCode.UNAVAILABLE})
# Ingest may also retry what could have been processed, because the events
# carry client-assigned ids and the server stores each id once.
RETRY_INGEST = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`max_attempts` counts the first try; 0 means retry for ever."""

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2  # +-20 %, so clients that failed together do not retry together

    def backoff(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failure in a row (1-based)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** max(0, failures - 1))
        return base * (1 + random.uniform(-self.jitter, self.jitter))

    def gives_up_after(self, failures: int) -> bool:
        return self.max_attempts > 0 and failures >= self.max_attempts


DEFAULT_POLICY = RetryPolicy()
# Ingest rides out a server restart (about 25 s of waiting in all).
INGEST_POLICY = RetryPolicy(max_attempts=10)
