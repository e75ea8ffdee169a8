"""The Pareto front of a run's passing candidates over latency, accuracy and memory.

A candidate is on the front when no other is at least as good on all three and better on one:
slower than the fastest but closer to fp32, or smaller in memory, it is still a choice a user
with another constraint would make. Screening keeps such a candidate for its full measurement
(search.execute), and the report names the front.

Accuracy is `Verdict.error` (the metric's distance from fp32, else 1 - the worst cosine):
comparable within one run, where every candidate was judged the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence


MEMORY_SLACK = 0.05  # peak RSS within 5 %: the same
ERROR_SLACK = 0.10  # errors within 10 % of each other (plus the floor): the same
ERROR_FLOOR = 1e-6  # below this, fp32 rounding: exact


@dataclasses.dataclass(frozen=True)
class Point:
    label: str
    p50_s: float
    error: float
    peak_bytes: float  # 0 when unknown: then memory decides nothing

    def dominates(self, other: "Point") -> bool:
        """At least as good on all three and better on one, where differences within the noise
        of each figure (MEMORY_SLACK, ERROR_SLACK) count as equal: two fp32 candidates differ in
        the eighth digit of their cosine and by a few MiB of RSS, which is no choice to offer."""
        error_par = self.error <= other.error * (1 + ERROR_SLACK) + ERROR_FLOOR
        memory_par = self.peak_bytes <= other.peak_bytes * (1 + MEMORY_SLACK)
        at_least = self.p50_s <= other.p50_s and error_par and memory_par
        better = (self.p50_s < other.p50_s or self.error * (1 + ERROR_SLACK) + ERROR_FLOOR < other.error
                  or self.peak_bytes * (1 + MEMORY_SLACK) < other.peak_bytes)
        return at_least and better

    def to_list(self) -> list:
        return [self.label, self.p50_s, self.error, self.peak_bytes]

    @classmethod
    def from_list(cls, data: Sequence) -> "Point":
        return cls(str(data[0]), float(data[1]), float(data[2]), float(data[3]))


def front(points: Iterable[Point]) -> list[Point]:
    """The non-dominated points, fastest first."""
    points = list(points)
    return sorted((p for p in points if not any(q.dominates(p) for q in points)), key=lambda p: p.p50_s)


def dominated_by(point: Point, points: Iterable[Point]) -> Point | None:
    """A point that dominates `point`, or None when it would be on the front."""
    return next((q for q in points if q.dominates(point)), None)
