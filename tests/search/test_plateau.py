"""Stopping early: once `patience` candidates in a row that cost worker time were each clearly
slower than the best so far (or failed), the rest of the plan is left out with that reason.
What costs nothing (cannot run here, resumed) is still reported, and a candidate that comes
within noise of the best starts the count again."""

from __future__ import annotations

from hone.bench.measure import MeasureSettings
from hone.config import NoConfig
from hone.search.budget import TimeBudget
from hone.search.planner import PlannedRecipe
from hone.search.recipe import Recipe, Step
from hone.search.strategy import Strategy
from hone.search.sweep import SweepSettings, sweep
from hone.validate.reference import compute_reference
from hone.validate.verdict import AccuracyBudget
from in_process_executor import InProcessExecutor
from plugins_for_tests import DelayRuntime
from results_factory import EAGER, make_recipe

EAGER_REAL = Recipe("eager", (), Step("eager", NoConfig()), baseline=True)


def _strategy(labels: list[str], contends: dict[str, bool | None], patience: int, unavailable=()):
    planned = [PlannedRecipe(EAGER)] + [PlannedRecipe(make_recipe(label), "cannot run here" if label in unavailable else None)
                                        for label in labels]
    skipped: dict[str, str] = {}
    strategy = Strategy(planned, TimeBudget(None), 1, pending=lambda r: 1, ran=lambda r: False,
                        on_skip=skipped.__setitem__, patience=patience,
                        contends=lambda recipe, results: contends[recipe.label],
                        plateau_reason=lambda n: f"plateau after {n}")
    proposed = []
    while (proposal := strategy.ask()) is not None:
        proposed.append(proposal.recipe.label)
        strategy.tell(proposal, [])
    return proposed, skipped


def test_after_patience_candidates_in_a_row_behind_the_best_the_rest_is_left_out_with_the_reason():
    contends = {"fast": True, "a": False, "b": False, "c": False, "d": True, "e": False}
    proposed, skipped = _strategy(list(contends), contends, patience=3)
    assert proposed == ["eager", "fast", "a", "b", "c"]
    assert skipped == {"d": "plateau after 3", "e": "plateau after 3"}


def test_a_contender_starts_the_count_again_and_free_candidates_do_not_count():
    contends = {"a": False, "b": False, "near": True, "c": False, "resumed": None, "d": False, "e": False, "f": False}
    proposed, skipped = _strategy(list(contends), contends, patience=3)
    assert proposed == ["eager", "a", "b", "near", "c", "resumed", "d", "e"]  # 'resumed' cost nothing
    assert list(skipped) == ["f"]


def test_what_cannot_run_here_is_still_reported_after_the_plateau_and_patience_0_never_stops():
    contends = {"a": False, "b": False, "gone": None, "c": False}
    proposed, skipped = _strategy(list(contends), contends, patience=2, unavailable={"gone"})
    assert proposed == ["eager", "a", "b", "gone"] and list(skipped) == ["c"]
    proposed, skipped = _strategy(list(contends), contends, patience=0)
    assert proposed == ["eager", *contends] and not skipped


def _sweep(tmp_path, time_budget_s):
    import torch

    from hone.models.workload import InputSet, Workload
    from tiny_models import TinyMLP

    torch.manual_seed(0)
    workload = Workload("tiny", TinyMLP().eval(), [InputSet("bs2", {"x": torch.randn(2, 32)})])
    # slow0 is the first candidate (the best so far); each later one is far beyond the margin of it.
    planned = [PlannedRecipe(EAGER_REAL), PlannedRecipe(DelayRuntime.recipe_with("unsupported-here", 1.0), "no such device"),
               PlannedRecipe(DelayRuntime.recipe_with("slow0", 0.002)),
               *(PlannedRecipe(DelayRuntime.recipe_with(f"slow{i}", 0.005 * i)) for i in range(1, 4))]
    settings = SweepSettings(device="cpu", threads=1, timeout_s=300, accuracy_budget=AccuracyBudget(0.01),
                             measure=MeasureSettings(max_time_s=0.2), time_budget_s=time_budget_s, patience=2)
    skipped: dict[str, str] = {}
    results = sweep(planned, workload, compute_reference(workload), settings, executor=InProcessExecutor(),
                    artifacts_dir=tmp_path / "art", on_skip=skipped.__setitem__)
    return {r.recipe.label for r in results}, skipped


def test_a_sweep_under_a_budget_stops_at_a_plateau_and_says_why(tmp_path):
    ran, skipped = _sweep(tmp_path, time_budget_s=3600)
    # slow0 is the best; slow1 and slow2 are more than 25 % slower, so the search stops before slow3.
    assert ran == {"eager", "unsupported-here", "slow0", "slow1", "slow2"}
    assert list(skipped) == ["slow3"]
    assert "plateau" in skipped["slow3"] and "slow0" in skipped["slow3"] and "--patience 0" in skipped["slow3"]


def test_without_a_time_budget_everything_runs(tmp_path):
    ran, skipped = _sweep(tmp_path / "all", time_budget_s=None)
    assert ran == {"eager", "unsupported-here", "slow0", "slow1", "slow2", "slow3"} and not skipped
