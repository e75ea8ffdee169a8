"""Paired timing: a candidate's speedup measured against eager in alternating windows, seconds apart.

Eager's figure from the start of a sweep is minutes old by the time a later candidate is timed,
and these machines drift by about 20 % over a run (frequency, neighbours, thermal state). Drift
that is slow next to a window cancels in the ratio of two windows taken back to back. So a
candidate that is measured in full is then timed in PAIRS pairs of short windows against an eager
build of the same model in the same worker, in ABBA order (eager first in even pairs, the
candidate first in odd ones: a linear drift inside a pair cancels too). Each pair gives one ratio
eager p50 / candidate p50; the speedup is their geometric mean, with a t-interval on the log
ratios. A short pause before each window lets a runtime's spinning thread pool (ONNX Runtime's,
OpenVINO's) park, so it does not slow the other runner it shares the cores with.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from hone.bench.measure import warm_up

PAIRS = 6
PAIR_WINDOW_S = 0.25  # timed seconds per window (at least PAIR_MIN_CALLS calls): 0.1 s gave intervals of +-25 % on MiniLM
PAIR_MIN_CALLS = 3
SETTLE_S = 0.02  # idle before each window: another runtime's spinning workers go to sleep
EAGER_WARMUP_S = 0.5
CONFIDENCE = 0.95

# Two-sided 95 % quantiles of Student's t, by degrees of freedom (beyond the table: normal).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t_quantile(df: int) -> float:
    if df <= 0:
        return math.inf
    known = [d for d in _T975 if d <= df]
    return _T975[max(known)] if df <= 30 else 1.96  # the nearest tabulated df at or below: wider, never narrower


@dataclasses.dataclass(frozen=True)
class PairedSpeedup:
    ratios: tuple[float, ...]  # eager window p50 / candidate window p50, one per pair
    eager_p50_s: tuple[float, ...]  # eager's window p50s: how eager itself moved
    candidate_p50_s: tuple[float, ...]
    at: float  # time.time() when the pairing began: where in the run eager was re-measured

    @property
    def speedup(self) -> float:
        return math.exp(statistics.fmean(math.log(r) for r in self.ratios))

    @property
    def eager_p50(self) -> float:
        return statistics.median(self.eager_p50_s)

    def interval(self) -> tuple[float, float]:
        return combined([self])[1:]

    def to_dict(self) -> dict[str, Any]:
        low, high = self.interval()
        return {**dataclasses.asdict(self), "speedup": self.speedup, "low": low, "high": high}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PairedSpeedup":
        return cls(tuple(data["ratios"]), tuple(data["eager_p50_s"]), tuple(data["candidate_p50_s"]), data["at"])


def combined(pairs: Sequence[PairedSpeedup]) -> tuple[float, float, float]:
    """(geometric-mean speedup, low, high) over several input sets' pairings: the mean of their
    mean log ratios, with the variances of those means added (independent sets) and the fewest
    degrees of freedom among them."""
    means, variances = [], []
    for p in pairs:
        logs = [math.log(r) for r in p.ratios]
        means.append(statistics.fmean(logs))
        variances.append(statistics.variance(logs) / len(logs) if len(logs) > 1 else math.inf)
    mean = statistics.fmean(means)
    se = math.sqrt(sum(variances)) / len(pairs)
    t = t_quantile(min(len(p.ratios) for p in pairs) - 1)
    half = t * se
    return math.exp(mean), math.exp(mean - half) if math.isfinite(half) else 0.0, math.exp(mean + half)


def _window(call: Callable[[], float], window_s: float, min_calls: int) -> float:
    """The median of at least `min_calls` calls and `window_s` of timed calls; one call when
    that one already lasted a whole window. A hiccup of a few milliseconds, which the median of
    three calls resists, is nothing next to a call that long, and on a slow model (ViT-base at
    batch 8 here: 1.6 s a call) three calls a window made one pairing 40 s of eager alone."""
    time.sleep(SETTLE_S)
    times = [call()]
    if times[0] >= window_s:
        return times[0]
    while len(times) < min_calls or sum(times) < window_s:
        times.append(call())
    return statistics.median(times)


def paired(
    eager: Callable[[], float],
    candidate: Callable[[], float],
    *,
    measure_s: float = 8.0,
    pairs: int = PAIRS,
    min_calls: int = PAIR_MIN_CALLS,
) -> PairedSpeedup:
    """`eager` and `candidate` each time one call and return its seconds (timer.time_call). The
    candidate is assumed warm (it was just measured); eager is warmed up here. `measure_s`: the
    full measurement's time cap, which scales the windows down for short (test) measurements."""
    at = time.time()
    window_s = min(PAIR_WINDOW_S, measure_s / 32)
    warm_up(eager, min(EAGER_WARMUP_S, measure_s / 8))
    ratios, eager_p50, candidate_p50 = [], [], []
    for i in range(pairs):
        if i % 2 == 0:
            e = _window(eager, window_s, min_calls)
            c = _window(candidate, window_s, min_calls)
        else:
            c = _window(candidate, window_s, min_calls)
            e = _window(eager, window_s, min_calls)
        ratios.append(e / c)
        eager_p50.append(e)
        candidate_p50.append(c)
    return PairedSpeedup(tuple(ratios), tuple(eager_p50), tuple(candidate_p50), at)
