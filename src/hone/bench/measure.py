"""measure(): warm up until stable, then time in windows until the spread is small or time is up.

Each sample is one call. Warm-up ends when the median of a window is within WARMUP_STABLE_REL
of the previous window's (caches, allocator and lazy init settled), or at the warm-up cap.
Measuring ends, after at least MIN_SAMPLES calls and min_time_s of timing, at the first of:

- IQR/median < TARGET_REL_IQR: the calls themselves are steady;
- the median is known to within MEDIAN_PRECISION (the half-width of its 95 % distribution-free
  interval, from order statistics): on a noisy machine the spread never reaches the target, but
  more calls no longer move the figure that is reported and compared. The Measurement still
  carries a noise warning with the spread it saw;
- the time cap, with a noise warning rather than pretended precision.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from hone.bench.measurement import Measurement

WARMUP_WINDOW_CALLS = 5
WARMUP_STABLE_REL = 0.05  # consecutive warm-up window medians within 5 %
WARMUP_MAX_S = 3.0
TARGET_REL_IQR = 0.05
MIN_SAMPLES = 10
MIN_MEASURE_S = 1.0  # fast models get many samples, not ten lucky ones
MAX_SAMPLES = 20_000
WINDOW_S = 0.25  # re-check the spread about this often
# Far inside the run-to-run drift of these machines (about 20 %) and the paired intervals
# (about +-10 %): a median known this well is not what limits a comparison.
MEDIAN_PRECISION = 0.02


@dataclasses.dataclass(frozen=True)
class MeasureSettings:
    max_time_s: float = 8.0
    warmup_max_s: float = WARMUP_MAX_S
    target_rel_iqr: float = TARGET_REL_IQR
    min_samples: int = MIN_SAMPLES
    min_time_s: float = MIN_MEASURE_S
    median_precision: float = MEDIAN_PRECISION


def _rel_iqr(times: list[float]) -> float:
    q = statistics.quantiles(times, n=4, method="inclusive")
    median = statistics.median(times)
    return (q[2] - q[0]) / median if median > 0 else float("inf")


def median_half_width(times: list[float]) -> float:
    """Half the width of the 95 % interval of the median, relative to the median: the order
    statistics at ranks n/2 -+ 1.96 sqrt(n)/2 (a binomial interval, no assumption about the
    distribution of the calls). Infinite below 10 samples."""
    n = len(times)
    if n < 10:
        return float("inf")
    ordered = sorted(times)
    spread = 1.96 * math.sqrt(n) / 2
    centre = (n - 1) / 2  # the median's 0-based rank
    lo, hi = max(0, math.floor(centre - spread)), min(n - 1, math.ceil(centre + spread))
    median = statistics.median(ordered)
    return (ordered[hi] - ordered[lo]) / 2 / median if median > 0 else float("inf")


def warm_up(call: Callable[[], float], max_s: float) -> int:
    """Run windows of calls until two consecutive window medians agree, or until `max_s` has
    passed (checked after every call: on a model of 1.6 s a call a window of five is 8 s);
    returns the call count."""
    start = time.perf_counter()
    calls = 0
    previous: float | None = None
    while True:
        window = []
        for _ in range(WARMUP_WINDOW_CALLS):
            window.append(call())
            if time.perf_counter() - start > max_s:
                return calls + len(window)
        calls += len(window)
        median = statistics.median(window)
        if previous is not None and abs(median - previous) <= WARMUP_STABLE_REL * previous:
            return calls
        if time.perf_counter() - start > max_s:
            return calls
        previous = median


def measure(
    fn: Callable[[], Any],
    timer: Any,
    *,
    batch_size: int,
    threads: int,
    settings: MeasureSettings = MeasureSettings(),
    resume: Measurement | None = None,
    **extra: Any,
) -> Measurement:
    """Time `fn` (one inference on fixed inputs). `extra` goes into the Measurement
    (build_s, first_call_s, peak memory), so one object carries the candidate's figures.
    `resume`: a measurement of the same `fn` taken just before (a screening): its calls are
    kept and its warm-up stands, so measuring in full adds calls instead of starting over (on a
    model of 0.7 s a call the screening's ten calls are 7 s). Its time counts against the cap."""
    call = lambda: timer.time_call(fn)  # noqa: E731
    warmup_calls = resume.warmup_calls if resume is not None else warm_up(call, settings.warmup_max_s)
    times: list[float] = list(resume.times_s) if resume is not None else []
    start = time.perf_counter() - sum(times)
    warning = None
    while True:
        # A window ends after WINDOW_S of measured time (or of wall time, whichever comes first).
        window_start, window_measured = time.perf_counter(), 0.0
        while len(times) < settings.min_samples or (
            window_measured < WINDOW_S and time.perf_counter() - window_start < WINDOW_S
        ):
            times.append(call())
            window_measured += times[-1]
            if len(times) >= MAX_SAMPLES:
                break
        rel_iqr = _rel_iqr(times)
        measured = sum(times)
        if measured >= settings.min_time_s and rel_iqr < settings.target_rel_iqr:
            break
        elapsed = time.perf_counter() - start
        if measured >= settings.min_time_s and (half := median_half_width(times)) < settings.median_precision:
            warning = (
                f"noisy timing: IQR/median {rel_iqr:.1%}, above the {settings.target_rel_iqr:.0%} target "
                f"(median within +-{half:.1%} after {elapsed:.1f} s, {len(times)} calls)"
            )
            break
        if elapsed >= settings.max_time_s or len(times) >= MAX_SAMPLES:
            if rel_iqr >= settings.target_rel_iqr:
                warning = (
                    f"noisy timing: IQR/median {rel_iqr:.1%} after {elapsed:.1f} s "
                    f"({len(times)} calls), above the {settings.target_rel_iqr:.0%} target"
                )
            break
    return Measurement(
        times_s=tuple(times),
        batch_size=batch_size,
        threads=threads,
        timer=timer.name,
        warmup_calls=warmup_calls,
        noise_warning=warning,
        **extra,
    )
