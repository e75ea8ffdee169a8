"""Paired timing: a confirmed candidate is timed against eager in alternating windows in its own
worker, so drift over the run cancels and the speedup carries an interval."""

from __future__ import annotations

import math
import time

import pytest
import torch

from hone.bench.paired import PairedSpeedup, combined, paired
from hone.search.result import Status


def test_the_interval_is_a_t_interval_on_the_log_ratios():
    p = PairedSpeedup((2.0, 2.0, 2.0, 2.0), (4e-3,) * 4, (2e-3,) * 4, at=0.0)
    assert p.speedup == pytest.approx(2.0) and p.interval() == pytest.approx((2.0, 2.0))
    spread = PairedSpeedup((1.8, 2.2, 1.9, 2.1), (4e-3,) * 4, (2e-3,) * 4, at=0.0)
    low, high = spread.interval()
    logs = [math.log(r) for r in spread.ratios]
    mean = sum(logs) / 4
    se = math.sqrt(sum((x - mean) ** 2 for x in logs) / 3 / 4)
    assert (low, high) == pytest.approx((math.exp(mean - 3.182 * se), math.exp(mean + 3.182 * se)))
    # Two sets: the geometric mean of their speedups, wider than neither alone would allow to be narrower.
    both = combined([spread, PairedSpeedup((1.0, 1.0, 1.0, 1.0), (1e-3,) * 4, (1e-3,) * 4, at=0.0)])
    assert both[0] == pytest.approx(math.sqrt(spread.speedup))
    assert both[1] < both[0] < both[2]


def test_abba_windows_cancel_a_drift_inside_the_pairing():
    start = time.perf_counter()

    def spin(base_s):
        def call():
            t0 = time.perf_counter()
            deadline = t0 + base_s * (1 + (t0 - start) / 0.5)  # doubles every half second
            while time.perf_counter() < deadline:
                pass
            return time.perf_counter() - t0
        return call

    found = paired(spin(0.002), spin(0.001), measure_s=1.0)
    low, high = found.interval()
    assert low <= 2.0 <= high and high / low < 1.5
    assert max(found.eager_p50_s) > 1.5 * min(found.eager_p50_s)  # eager itself really moved


def test_a_call_longer_than_a_window_is_a_window_of_its_own():
    from hone.bench import paired as paired_mod

    calls = []

    def slow():
        calls.append(1)
        return 0.3  # seconds, as the timer reports them: longer than a window
    assert paired_mod._window(slow, 0.25, 3) == 0.3 and len(calls) == 1
    quick = iter([0.01, 0.03, 0.02] + [0.01] * 100)
    assert paired_mod._window(lambda: next(quick), 0.05, 3) == pytest.approx(0.02)  # three calls, 0.06 s: their median


@pytest.mark.slow
def test_with_injected_drift_the_paired_speedup_stays_within_its_interval_of_the_true_ratio(monkeypatch):
    import hone
    from plugins_for_tests import DRIFT_T0, DriftingEagerRuntime, DriftingFastRuntime
    from tiny_models import TinyMLP

    torch.manual_seed(0)
    monkeypatch.setenv(DRIFT_T0, str(time.time()))
    result = hone.optimize(
        TinyMLP().eval(), {"x": torch.randn(2, 32)}, recipes=[DriftingEagerRuntime.recipe(), DriftingFastRuntime.recipe()],
        store=False, progress=False, profile_first=False, measure_time_s=1.0,
    )
    eager, fast = (next(r for r in result.results if r.recipe.label == label) for label in ("eager", "test_drifting_fast"))
    assert eager.status is Status.OK and fast.status is Status.OK and fast.paired is not None
    ranked = next(r for r in result.selection.ranking if r.recipe.label == "test_drifting_fast")
    # The true ratio is 2 less the timer's fixed cost per call (~10 us on 2 ms, 1.99): within 1 %.
    assert ranked.paired and ranked.low <= 2.0 * 1.01 and ranked.high >= 2.0 * 0.99, (ranked.low, ranked.speedup, ranked.high)
    assert ranked.high / ranked.low < 1.1  # an interval narrow enough to mean something
    # Without pairing the drift shows: eager timed at the start, the candidate seconds later.
    unpaired = eager.measurement.p50 / fast.measurement.p50
    assert unpaired < 2.0 * 0.85, unpaired
    assert "eager drift over the run" in result.selection.drift
    assert "paired with eager" in result.selection.why_best
