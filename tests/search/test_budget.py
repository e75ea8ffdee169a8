"""The time budget: the baseline sets the unit, a recipe runs only if its cost fits in what is
left, expensive recipes are planned last unless advised, and what was left out is reported."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import hone
from hone.models.workload import InputSet, Workload
from hone.search.budget import DEFAULT_UNIT_S, TimeBudget
from hone.search.planner import plan
from hone.search.result import CandidateResult, Status
from results_factory import EAGER, make_measurement
from tiny_models import TinyMLP, tiny_mlp


class FakeClock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _recipe(cost: float):
    return dataclasses.replace(EAGER, label=f"cost{cost:g}", cost=cost)


def test_no_budget_refuses_nothing():
    assert TimeBudget(None).refusal(_recipe(1000), 2) is None


def test_the_baseline_sets_the_unit_and_the_refusal_shows_the_arithmetic():
    clock = FakeClock()
    budget = TimeBudget(deadline=100.0, clock=clock)
    assert budget.estimate_s(_recipe(2), 1) == 2 * DEFAULT_UNIT_S  # before the baseline ran
    ran = [CandidateResult(EAGER, s, Status.OK, "ok", measurement=make_measurement(0.01), wall_s=w)
           for s, w in (("bs1", 8.0), ("bs8", 12.0))]
    budget.observe_baseline(ran)
    assert budget.unit_s == 10.0
    clock.now = 50.0  # 50 s left
    assert budget.refusal(_recipe(2), 2) is None  # 2 x 10 s x 2 sets = 40 s fits
    why = budget.refusal(_recipe(3), 2)  # 60 s does not
    assert why.startswith("over the time budget: needs ~60 s") and "50 s left" in why
    assert "cost 3 x 10 s" in why and "--time-budget" in why


def test_expensive_recipes_go_last_unless_the_profile_advises_them(hardware):
    from hone.profiler.records import Finding

    w = Workload("t", TinyMLP(), [InputSet("bs2", {"x": torch.randn(2, 32)})])
    labels = [p.recipe.label for p in plan(w, hardware)]
    cheap_after = [label for label in labels[labels.index("inductor-max-autotune"):]
                   if label != "inductor-max-autotune"]
    costs = {p.recipe.label: p.recipe.cost for p in plan(w, hardware)}
    assert all(costs[label] >= 5.0 for label in cheap_after), cheap_after  # only expensive ones follow
    advised = [p.recipe.label for p in plan(w, hardware, findings=[Finding("compute", 0.8, "compute-bound: 80%")])]
    assert advised.index("inductor-max-autotune") < advised.index("onnxruntime")  # it claims compute; ORT does not


@pytest.mark.slow
def test_a_recipe_over_the_budget_is_left_out_and_reported():
    from plugins_for_tests import RaiseRuntime

    model, x = tiny_mlp()
    costly = dataclasses.replace(RaiseRuntime.recipe(), cost=10_000.0)
    result = hone.optimize(model, x, recipes=[costly], store=False, progress=False, measure_time_s=0.3,
                           time_budget_s=120)
    assert [r.recipe.label for r in result.results] == ["eager"]  # never started
    assert result.run.pruned["test_raise"].startswith("over the time budget")
    assert "not planned: test_raise: over the time budget" in result.table()
