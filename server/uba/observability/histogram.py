"""A histogram for one writer thread, with no lock and no library.

The detection engine times every detector on every event. The Prometheus
client's Histogram takes a lock and walks its buckets on each observation,
which costs more than a cheap detector's work; here an observation is a
bisect and two list updates on the writer thread (the only one that writes),
and the scrape thread reads the counts (a scrape may see an observation's
count before its sum: a transient difference of one event).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

# Seconds per event per detector: most detectors take microseconds, the
# Isolation Forest's deferred batch and the population detectors more.
DETECTOR_BUCKETS = (
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.1,
)


class FastHistogram:
    """Cumulative-on-read bucket counts and a sum, written by one thread."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = DETECTOR_BUCKETS):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> tuple[list[tuple[str, int]], float]:
        """Prometheus buckets (le, cumulative count), +Inf last, and the sum."""
        counts = list(self.counts)
        out, total = [], 0
        for bound, count in zip(self.bounds, counts, strict=False):
            total += count
            out.append((repr(bound), total))
        out.append(("+Inf", total + counts[-1]))
        return out, self.sum
