"""Selection under an objective and limits (search.constraints), the best effort when none is
met, the Pareto front, and a stored run that re-selects with its own constraints."""

import pytest

from hone.bench.measurement import Measurement
from hone.config import NoConfig
from hone.errors import InputError
from hone.search.constraints import Constraints
from hone.search.recipe import Recipe, Step
from hone.search.result import CandidateResult, Status
from hone.search.select import select
from hone.validate.verdict import Verdict

MIB = 1024 * 1024


def _ok(label, input_set, p50_ms, *, p99_ms=None, peak_mib=512, batch=1):
    """A candidate whose p50 and p99 are exactly the figures given: 98 calls at p50, 2 at p99."""
    p99_ms = p50_ms if p99_ms is None else p99_ms
    times = (p50_ms / 1e3,) * 98 + (p99_ms / 1e3,) * 2
    m = Measurement(times_s=times, batch_size=batch, threads=1, timer="perf_counter",
                    peak_rss_bytes=None if peak_mib is None else int(peak_mib * MIB))
    recipe = Recipe(label, (), Step(label, NoConfig()), baseline=label == "eager")
    return CandidateResult(recipe, input_set, Status.OK, "fine", verdict=Verdict(True, "fine", "float32"), measurement=m)


def _results():
    """eager 10 ms; fast 4 ms with a 30 ms tail and 900 MiB; lean 6 ms, 8 ms p99, 200 MiB;
    wide 5 ms at bs1 but the most samples a second at bs8."""
    return [
        _ok("eager", "bs1", 10, peak_mib=600), _ok("eager", "bs8", 80, batch=8, peak_mib=600),
        _ok("fast", "bs1", 4, p99_ms=30, peak_mib=900), _ok("fast", "bs8", 40, p99_ms=45, batch=8, peak_mib=900),
        _ok("lean", "bs1", 6, p99_ms=8, peak_mib=200), _ok("lean", "bs8", 48, p99_ms=50, batch=8, peak_mib=220),
        _ok("wide", "bs1", 7, peak_mib=700), _ok("wide", "bs8", 30, batch=8, peak_mib=700),
    ]


def test_default_selection_is_the_fastest_by_geometric_mean():
    sel = select(_results())
    assert sel.best.label == "fast" and not sel.best_effort and sel.constraint_misses == {}


def test_a_p99_limit_sets_aside_the_fast_candidate_with_a_long_tail():
    sel = select(_results(), constraints=Constraints(max_p99_ms=35))
    assert sel.best.label == "wide"  # fast's p99 is 45 ms at bs8, lean's 50 ms; wide's 30 ms
    assert "p99 45 ms at bs8 > 35 ms (+29%)" in sel.losers["fast"]
    tight = select(_results(), constraints=Constraints(max_p99_ms=20))
    # no candidate is under 20 ms at bs8 (all take 30 ms or more there): best effort, the closest
    assert tight.best_effort
    assert "no candidate meets every limit" in tight.why_best
    assert "p99" in tight.constraint_misses[tight.best.label] and "bs8" in tight.constraint_misses[tight.best.label]
    # the closest is the one with the smallest worst excess: wide (30 ms at bs8: +50 %)
    assert tight.best.label == "wide"
    assert "misses the limits" in tight.losers["fast"] and "+" in tight.losers["fast"]


def test_a_p99_limit_at_bs1_only_tail_picks_lean_over_fast():
    results = [r for r in _results() if r.input_set == "bs1"]
    sel = select(results, constraints=Constraints(max_p99_ms=10))
    assert sel.best.label == "lean"
    assert "p99 30 ms at bs1 > 10 ms (+200%)" in sel.losers["fast"]
    assert "meets objective latency, p99 <= 10 ms" in sel.why_best


def test_a_memory_limit_and_the_memory_objective():
    limited = select(_results(), constraints=Constraints(max_memory_mb=650))
    assert limited.best.label == "lean"  # faster than eager, and 220 MiB is under 650
    assert "peak memory 900 MiB" in limited.losers["fast"]
    smallest = select(_results(), constraints=Constraints(objective="memory"))
    assert smallest.best.label == "lean" and "objective memory: peak 220 MiB" in smallest.why_best


def test_the_throughput_objective_ranks_by_the_best_input_sets_samples_a_second():
    sel = select(_results(), constraints=Constraints(objective="throughput"))
    assert sel.best.label == "wide"  # 8 / 30 ms = 267/s beats fast's 8 / 40 ms = 200/s
    assert "samples/s" in sel.why_best


def test_an_unmeasured_memory_figure_is_not_a_miss_but_is_said():
    results = [_ok("eager", "bs1", 10, peak_mib=None), _ok("fast", "bs1", 5, peak_mib=None)]
    sel = select(results, constraints=Constraints(max_memory_mb=1))
    assert sel.best.label == "fast" and not sel.best_effort
    assert "could not be checked" in sel.why_best


def test_the_pareto_front_keeps_each_choice_a_user_with_another_limit_would_make():
    sel = select(_results())
    on_front = {p["label"] for p in sel.front}
    # fast (quickest by geometric mean) and lean (least memory) are each unbeaten on something;
    # eager is slower than lean and bigger: dominated
    assert {"fast", "lean"} <= on_front and "eager" not in on_front
    assert [p["p50_s"] for p in sel.front] == sorted(p["p50_s"] for p in sel.front)
    assert sel.to_dict()["front"] == list(sel.front)


@pytest.mark.parametrize("bad", [dict(objective="carbon"), dict(max_p99_ms=0), dict(max_memory_mb=-5), dict(max_p99_ms=True)])
def test_bad_constraints_are_input_errors(bad):
    with pytest.raises(InputError):
        Constraints(**bad)


def test_a_stored_run_reselects_with_the_constraints_it_was_run_with(tmp_path):
    from hone.search.run import OptimizeResult
    from hone.store import Store
    from results_factory import make_info

    constraints = Constraints(max_p99_ms=10)
    info = make_info(settings={"timeout_s": 600, "accuracy_budget": 0.01, "constraints": constraints.to_dict()},
                     input_sets={"bs1": ["x: float32[1, 4]"]})
    results = [r for r in _results() if r.input_set == "bs1"]
    live = OptimizeResult.from_results(info, results)
    assert live.selection.best.label == "lean"  # not fast: its p99 is 30 ms
    with Store(tmp_path / "hone.db") as db:
        run_id = db.start_run(info, "key")
        for r in results:
            db.record(run_id, r)
        db.finish_run(run_id, "finished")
        stored = db.load_run(run_id, resolve=False)
    assert stored.selection.best.label == "lean"
    assert stored.selection.constraints == constraints


@pytest.mark.slow
def test_a_run_that_meets_no_limit_still_exports_its_best_effort(tmp_path):
    """A real run with a memory limit nothing can meet: the closest candidate is named, with the
    figure it misses by, its artifact was kept (under a limit the winner need not be the fastest),
    it exports, and the stored run says the same."""
    import torch

    import hone
    from tiny_models import tiny_mlp

    torch.manual_seed(0)
    model, x = tiny_mlp()
    db = tmp_path / "hone.db"
    result = hone.optimize(model, x, store=db, progress=False, measure_time_s=0.3, recipes=["torchscript"],
                           max_memory_mb=1)
    sel = result.selection
    assert sel.best_effort and sel.best is not None
    assert "peak memory" in sel.constraint_misses[sel.best.label] and "> 1 MiB" in sel.constraint_misses[sel.best.label]
    assert result.run.settings["constraints"] == {"objective": "latency", "max_p99_ms": None, "max_memory_mb": 1,
                                                   "price": None}
    where = result.export(tmp_path / "out")
    assert (where / "manifest.json").exists()
    with hone.store.Store(db) as store:
        stored = store.load_run(None, resolve=False)
    assert stored.selection.best.label == sel.best.label and stored.selection.best_effort
