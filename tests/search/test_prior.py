"""The prior: an earlier run of this model here orders the plan by measured speedup and leaves
out what cannot pay; runs of models with a similar op mix predict the rest."""

from __future__ import annotations

import dataclasses

import pytest

from hone.config import NoConfig
from hone.search.budget import TimeBudget
from hone.search.history import History, _measured
from hone.search.planner import Plan, PlannedRecipe
from hone.search.prior import Measured, apply_prior, known_cost_s, op_mix, predicted_speedup, similarity
from hone.search.recipe import Recipe, Step
from hone.search.result import CandidateResult, Status
from hone.search.select import select
from hone.validate.verdict import Verdict
from results_factory import make_measurement


def _recipe(label: str, baseline: bool = False) -> Recipe:
    return Recipe(label, (), Step(label, NoConfig()), origin="planned", baseline=baseline)


def _plan(*labels: str) -> Plan:
    return Plan([PlannedRecipe(_recipe("eager", baseline=True))] + [PlannedRecipe(_recipe(label)) for label in labels])


def _measured_as(run_id: int, speedup: float | None, best: float, missed: bool = False, same: bool = True) -> Measured:
    return Measured(run_id, speedup, best, wall_s=30.0, sets=2, missed_accuracy=missed, same_versions=same)


def test_the_same_models_run_orders_by_measured_speedup_and_leaves_out_what_cannot_pay():
    plan = _plan("slow", "fast", "mid", "wrong", "new")
    keys = {p.recipe.label: p.recipe.key for p in plan}
    history = History(measured={
        keys["slow"]: _measured_as(4, 1.1, best=3.0),  # 3.0 / 1.1: far beyond the screening margin
        keys["fast"]: _measured_as(4, 3.0, best=3.0),
        keys["mid"]: _measured_as(4, 2.6, best=3.0),  # within the margin: the winner stays all the same
        keys["wrong"]: _measured_as(4, None, best=3.0, missed=True),
    })
    apply_prior(plan, history)
    # "new" was not measured by that run (its budget left it out): a repeat run confirms instead.
    assert [p.recipe.label for p in plan] == ["eager", "fast"]
    assert plan.pruned["new"].startswith("run 4 of this model here (same library versions) did not measure it")
    assert plan.pruned["slow"].startswith("run 4 of this model here measured 1.10x against its winner's 3.00x")
    assert "over the accuracy budget" in plan.pruned["wrong"] and "--explore" in plan.pruned["wrong"]
    assert plan[1].recipe.origin == "planned; prior run 4 of this model here: 3.00x"
    assert plan[1].recipe.key == keys["fast"]  # the origin is not part of what is built

    explored = apply_prior(_plan("slow", "fast", "mid", "wrong", "new"), history, explore=True)
    assert {p.recipe.label for p in explored} == {"eager", "slow", "fast", "mid", "wrong", "new"} and not explored.pruned


def test_other_library_versions_prune_nothing_and_the_previous_winner_is_never_pruned():
    plan = _plan("slow", "winner")
    keys = {p.recipe.label: p.recipe.key for p in plan}
    other = History(measured={keys["slow"]: _measured_as(4, 1.1, best=3.0, same=False)})
    assert len(apply_prior(plan, other)) == 3
    winner = History(winner=keys["winner"], measured={keys["winner"]: _measured_as(4, 1.0, best=3.0)})
    # 1.0x against its run's best 3.0x (another input set may have won it), still not left out.
    assert [p.recipe.label for p in apply_prior(_plan("slow", "winner"), winner)] == ["eager", "winner"]


def test_without_this_models_history_a_recipe_with_no_evidence_is_predicted_the_median():
    plan = _plan("a", "new", "b")
    keys = {p.recipe.label: p.recipe.key for p in plan}
    # Evidence from another library version: nothing is left out, but the order follows it.
    history = History(measured={keys["a"]: _measured_as(4, 1.2, best=3.0, same=False),
                                keys["b"]: _measured_as(4, 3.0, best=3.0, same=False)})
    assert [p.recipe.label for p in apply_prior(plan, history)] == ["eager", "b", "new", "a"]  # new: median 2.1


def test_similar_models_predict_by_similarity_weighted_speedups():
    mlp = {"aten::addmm": 0.8, "aten::relu": 0.2}
    assert similarity(mlp, mlp) == pytest.approx(1.0)
    assert similarity(mlp, {"aten::convolution": 1.0}) == 0.0
    history = History(similar={"b": [(1.0, 2.0), (0.9, 4.0)]})
    value, where = predicted_speedup(_recipe("b"), history)
    assert value == pytest.approx(2 ** (1.0 / 1.9) * 4 ** (0.9 / 1.9))
    assert "2 run(s) of models with a similar op mix" in where
    assert predicted_speedup(_recipe("a"), history) is None
    assert [p.recipe.label for p in apply_prior(_plan("a", "b"), history)] == ["eager", "b", "a"]


def test_op_mix_is_the_share_of_op_time_per_op_type():
    from hone.profiler.records import OpStat

    ops = [OpStat("aten::addmm", 3, 0.003, 0, 0), OpStat("aten::relu", 3, 0.001, 0, 0)]
    assert op_mix(ops) == pytest.approx({"aten::addmm": 0.75, "aten::relu": 0.25})


def test_the_budget_uses_the_measured_worker_time_when_there_is_one():
    plan = _plan("a")
    history = History(measured={plan[1].recipe.key: _measured_as(4, 2.0, best=2.0)})  # 30 s for 2 sets
    assert known_cost_s(plan[1].recipe, history, 1) == pytest.approx(15.0)
    clock = iter([0.0] * 4)
    budget = TimeBudget(10.0, clock=lambda: next(clock), known_cost=lambda r, n: known_cost_s(r, history, n))
    why = budget.refusal(plan[1].recipe, 2)
    assert why.startswith("over the time budget: needs ~30 s (its worker time for 2 input set(s) in the last run")


def test_a_run_is_read_into_measured_speedups_best_and_misses():
    eager, fast, wrong = _recipe("eager", baseline=True), _recipe("fast"), _recipe("q")
    verdict = Verdict(False, "over budget", "int8")

    def result(recipe, status, p50=None):
        return CandidateResult(recipe, "bs1", status, "x", verdict if status is Status.WRONG_ANSWER else None,
                               make_measurement(p50) if p50 else None, wall_s=10.0)

    results = [result(eager, Status.OK, 0.02), result(fast, Status.OK, 0.01), result(wrong, Status.WRONG_ANSWER)]
    found = _measured(9, results, select(results), same_versions=True)
    assert found[fast.key].speedup == pytest.approx(2.0) and found[fast.key].best_speedup == pytest.approx(2.0)
    assert found[wrong.key].missed_accuracy and found[wrong.key].not_worth()


def test_a_repeat_rebuilds_only_what_measured_as_fast_as_the_winner():
    plan = _plan("close", "apart", "level")
    keys = {p.recipe.label: p.recipe.key for p in plan}
    history = History(measured={
        keys["close"]: dataclasses.replace(_measured_as(4, 2.8, best=3.0), high=3.1, best_low=2.9),
        keys["apart"]: dataclasses.replace(_measured_as(4, 2.6, best=3.0), high=2.7, best_low=2.9),
        # Faster by the point estimate, and the winner was kept over it (within noise): built again.
        keys["level"]: dataclasses.replace(_measured_as(4, 3.2, best=3.0), high=3.5, best_low=2.9),
    })
    apply_prior(plan, history)
    assert [p.recipe.label for p in plan] == ["eager", "level"]
    assert "(at most 2.70x) against its winner's 3.00x (at least 2.90x): slower beyond noise" in plan.pruned["apart"]
    assert "2.80x against its winner's 3.00x, within noise; a repeat run keeps its winner" in plan.pruned["close"]


@pytest.mark.slow
def test_a_run_of_another_model_with_the_same_op_mix_predicts_through_the_store(tmp_path):
    import torch

    import hone
    from tiny_models import TinyMLP

    from in_process_executor import InProcessExecutor

    # In this process: the prior's arithmetic through the store is under test, not the workers.
    kw = dict(include=["torchscript-trace"], store=tmp_path / "runs.db", progress=False, measure_time_s=0.2,
              executor=InProcessExecutor())
    torch.manual_seed(0)
    first = hone.optimize(TinyMLP().eval(), torch.randn(4, 32), **kw)
    measured = next(r for r in select(first.results).ranking if r.recipe.label == "torchscript-trace")
    # Another model (wider: another model id), the same op types in nearly the same shares.
    second = hone.optimize(TinyMLP(hidden=96).eval(), torch.randn(4, 32), **kw)
    assert second.run.model_id != first.run.model_id
    planned = next(r.recipe for r in second.results if r.recipe.label == "torchscript-trace")
    assert f"prior 1 run(s) of models with a similar op mix here: {measured.speedup:.2f}x" in planned.origin
