import dataclasses

import pytest

from hone.bench.measurement import Measurement
from hone.config import NoConfig
from hone.search.recipe import Recipe, Step
from hone.search.result import CandidateResult, Status
from hone.search.select import select


def _recipe(label):
    return Recipe(label, (), Step(label, NoConfig()), baseline=label == "eager")  # the control is flagged


def _ok(label, input_set, ms, spread=0.0):
    times = tuple(ms / 1e3 * (1 + spread * ((i % 3) - 1)) for i in range(30))
    m = Measurement(times_s=times, batch_size=1, threads=1, timer="perf_counter")
    return CandidateResult(_recipe(label), input_set, Status.OK, "fine", measurement=m)


def test_fastest_ok_recipe_wins_by_geometric_mean():
    results = [
        _ok("eager", "bs1", 10), _ok("eager", "bs8", 80),
        _ok("fast", "bs1", 5), _ok("fast", "bs8", 40),
        _ok("mixed", "bs1", 2.5), _ok("mixed", "bs8", 100),
    ]
    sel = select(results)
    assert sel.best.label == "fast"
    assert abs(sel.ranking[0].speedup - 2.0) < 1e-9
    assert "2.00x" in sel.why_best and "mixed" in sel.why_runner_up


def test_wrong_answer_never_wins_however_fast():
    wrong = CandidateResult(_recipe("cheat"), "bs1", Status.WRONG_ANSWER, "max abs err 1",
                            measurement=Measurement((0.0001,) * 10, 1, 1, "perf_counter"))
    sel = select([_ok("eager", "bs1", 10), wrong])
    assert sel.best.label == "eager"
    assert "wrong_answer" in sel.losers["cheat"]


def test_a_recipe_failing_at_any_input_set_cannot_win():
    crashed = CandidateResult(_recipe("fast"), "bs8", Status.CRASHED, "signal")
    sel = select([_ok("eager", "bs1", 10), _ok("eager", "bs8", 80), _ok("fast", "bs1", 1), crashed])
    assert sel.best.label == "eager" and "crashed at bs8" in sel.losers["fast"]


def test_gain_within_noise_is_called_so():
    sel = select([_ok("eager", "bs1", 10, spread=0.1), _ok("other", "bs1", 9.8, spread=0.1)])
    assert sel.best.label == "other" and "within noise" in sel.why_best


def test_nothing_passed():
    sel = select([CandidateResult(_recipe("eager"), "bs1", Status.CRASHED, "x")])
    assert sel.best is None and "no candidate" in sel.why_best


def test_noisy_baseline_is_called_out_in_the_verdict():
    eager = _ok("eager", "bs1", 100)
    eager = CandidateResult(eager.recipe, "bs1", Status.OK, "fine",
                            measurement=Measurement(eager.measurement.times_s, 1, 1, "perf_counter", noise_warning="noisy"))
    sel = select([eager, _ok("fast", "bs1", 10)])
    assert sel.best.label == "fast" and "timing was noisy at bs1" in sel.why_best


def test_payoff_counts_the_calls_that_repay_the_one_time_cost():
    from hone.search.select import payoffs
    from results_factory import EAGER, INDUCTOR, make_measurement

    eager = CandidateResult(EAGER, "bs1", Status.OK, "ok", measurement=make_measurement(0.010, build_s=0.5))
    fast = CandidateResult(INDUCTOR, "bs1", Status.OK, "ok", measurement=make_measurement(0.006, build_s=20.5))
    slow = CandidateResult(dataclasses.replace(INDUCTOR, label="slow"), "bs1", Status.OK, "ok",
                           measurement=make_measurement(0.012, build_s=5.5))
    found = {p.label: p for p in payoffs([eager, fast, slow])}
    assert found["inductor"].extra_s == pytest.approx(20.0)
    assert found["inductor"].calls == 5000  # 20 s / 4 ms saved per call
    assert found["slow"].calls is None  # slower than eager: it never pays off


def _paired(ratios):
    from hone.bench.paired import PairedSpeedup

    return PairedSpeedup(tuple(ratios), (0.01,) * len(ratios), tuple(0.01 / r for r in ratios), at=0.0)


def test_paired_speedups_rank_and_beyond_noise_needs_separate_intervals():
    eager = _ok("eager", "bs1", 10)
    a = dataclasses.replace(_ok("a", "bs1", 5), paired=_paired([2.0, 2.1, 1.9, 2.0]), stage="confirmed")
    b = dataclasses.replace(_ok("b", "bs1", 4), paired=_paired([1.5, 1.6, 1.4, 1.5]), stage="confirmed")
    sel = select([eager, a, b])
    # b's p50 against eager at the start says 2.5x; paired beside eager it is 1.5x: a wins.
    assert sel.best.label == "a" and sel.ranking[0].paired
    assert "paired with eager, 95 %" in sel.why_best and "beyond noise: the intervals separate" in sel.why_runner_up
    close = dataclasses.replace(b, paired=_paired([1.8, 2.2, 1.7, 2.3]))
    assert "within noise: the intervals overlap" in select([eager, a, close]).why_runner_up


def test_the_previous_winner_stays_unless_beaten_beyond_noise():
    eager = _ok("eager", "bs1", 10)
    incumbent = dataclasses.replace(_ok("a", "bs1", 5), paired=_paired([2.0, 2.2, 1.8, 2.0]), stage="confirmed")
    close = dataclasses.replace(_ok("b", "bs1", 4), paired=_paired([2.1, 2.5, 1.9, 2.3]), stage="confirmed")
    clear = dataclasses.replace(_ok("c", "bs1", 3), paired=_paired([3.0, 3.1, 2.9, 3.0]), stage="confirmed")
    previous = {"key": incumbent.recipe.key, "run": 7}

    assert select([eager, incumbent, close]).best.label == "b"  # no history: the point estimate leads
    kept = select([eager, incumbent, close], incumbent=previous)
    assert kept.best.label == "a" and kept.ranking[0].recipe.label == "a"
    assert "kept as the winner of run 7: b at 2.19x" in kept.why_best
    assert select([eager, incumbent, clear], incumbent=previous).best.label == "c"  # beaten beyond noise
    screened = dataclasses.replace(incumbent, stage="screened", paired=None)  # clearly slower this time
    assert select([eager, screened, close], incumbent=previous).best.label == "b"


def test_a_screened_candidate_ranks_after_those_measured_in_full():
    eager = _ok("eager", "bs1", 10)
    confirmed = dataclasses.replace(_ok("a", "bs1", 5), paired=_paired([2.0, 2.1, 1.9, 2.0]), stage="confirmed")
    # Its short figure against eager from the start looks faster, but it was never a contender.
    screened = dataclasses.replace(_ok("s", "bs1", 4), stage="screened")
    sel = select([eager, confirmed, screened])
    assert sel.best.label == "a" and [r.recipe.label for r in sel.ranking] == ["a", "eager", "s"]
