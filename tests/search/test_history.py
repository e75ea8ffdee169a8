"""What a store remembers between runs: failures that would repeat are reported, not rebuilt
(same recipe, model, machine and library versions; --retry-failed rebuilds them), and the
previous winner is tried first. The sweeps run their candidates in this process
(tests/in_process_executor.py, proven equal to the workers in tests/search/test_executor.py):
what a store remembers is under test here, not the isolation, and a worker's start is seconds."""

from __future__ import annotations

import pytest
import torch

import hone
from hone import api
from hone.config import NoConfig
from hone.search.history import History
from hone.search.planner import Plan, PlannedRecipe
from hone.search.recipe import Recipe, Step
from hone.search.result import Status
from hone.store import Store
from in_process_executor import InProcessExecutor
from plugins_for_tests import CountingRuntime, RaiseRuntime, SlowEagerRuntime, UnsupportedRuntime
from tiny_models import tiny_mlp


def _plan(*labels: str) -> Plan:
    eager = PlannedRecipe(Recipe("eager", (), Step("eager", NoConfig()), baseline=True))
    return Plan([eager] + [PlannedRecipe(Recipe(label, (), Step(label, NoConfig()), origin="planned")) for label in labels])


def test_the_previous_winner_moves_right_after_the_baseline_and_says_why():
    plan = _plan("a", "b", "c")
    winner = plan[3].recipe.key
    History(winner=winner, winner_run=7).winner_first(plan)
    assert [p.recipe.label for p in plan] == ["eager", "c", "a", "b"]
    assert plan[1].recipe.origin == "planned; won run 7 of this model here: tried first"
    assert plan[1].recipe.key == winner  # the origin is not part of what is built


@pytest.mark.parametrize("winner", [None, "not-planned", "baseline"])
def test_the_plan_is_unchanged_without_a_planned_non_baseline_winner(winner):
    plan = _plan("a", "b")
    key = plan[0].recipe.key if winner == "baseline" else winner
    History(winner=key, winner_run=1).winner_first(plan)
    assert [p.recipe.label for p in plan] == ["eager", "a", "b"]


@pytest.mark.slow
def test_a_second_run_reports_known_failures_tries_the_winner_first_and_retries_on_request(tmp_path, monkeypatch):
    model, x = tiny_mlp()
    # The slow baseline makes test_counting the winner on any machine; it is planned last.
    recipes = [SlowEagerRuntime.recipe(), UnsupportedRuntime.recipe(), RaiseRuntime.recipe(), CountingRuntime.recipe()]
    kw = dict(recipes=recipes, store=tmp_path / "runs.db", progress=False, measure_time_s=0.2, executor=InProcessExecutor())

    first = hone.optimize(model, x, **kw)
    statuses = {r.recipe.label: r.status for r in first.results}
    assert statuses["test_unsupported"] is Status.UNSUPPORTED and statuses["test_raise"] is Status.CRASHED
    assert first.selection.best.label == "test_counting" and first.run.history["previous_winner_run"] is None

    second = hone.optimize(model, x, **kw)
    order = list(dict.fromkeys(r.recipe.label for r in second.results))
    assert order == ["eager", "test_counting", "test_unsupported", "test_raise"]
    assert second.run.history["known_failures"] == 2 and second.run.history["previous_winner_run"] == first.run.run_id
    # The run keeps its incumbent, so the stored run re-selects what it reported.
    assert second.run.incumbent == {"key": first.selection.best.key, "run": first.run.run_id}
    with Store(tmp_path / "runs.db") as db:
        assert db.load_run(second.run.run_id).run.incumbent == second.run.incumbent
    known = {r.recipe.label: r for r in second.results if r.known_from is not None}
    assert set(known) == {"test_unsupported", "test_raise"}
    for label, r in known.items():
        original = next(o for o in first.results if o.recipe.label == label)
        assert r.status is original.status and r.known_from == first.run.run_id
        assert r.reason.endswith(original.reason) and r.reason.startswith(f"known from run {first.run.run_id}")
        assert r.build is None and r.wall_s == 0  # no worker ran it
    assert second.selection.best.label == "test_counting"

    # A third run still points at the run that measured the failure, not at the one that repeated it.
    third = hone.optimize(model, x, **kw)
    assert {r.known_from for r in third.results if r.known_from is not None} == {first.run.run_id}

    retried = hone.optimize(model, x, retry_failed=True, **kw)
    rebuilt = {r.recipe.label: r for r in retried.results if r.recipe.label in known}
    assert all(r.known_from is None and r.wall_s > 0 for r in rebuilt.values())
    assert rebuilt["test_unsupported"].reason == "op aten::frobnicate has no kernel here"

    versions = api._versions()
    monkeypatch.setattr(api, "_versions", lambda: {**versions, "torch": "0.0.0"})
    upgraded = hone.optimize(model, x, **kw)  # another torch: what failed may work now
    assert not any(r.known_from for r in upgraded.results)
    assert upgraded.run.history["previous_winner_run"] == retried.run.run_id  # the winner holds across versions


def test_a_refined_winner_is_added_first_when_its_base_is_planned():
    retried = Recipe("b+keep2", (), Step("b-kept", NoConfig()), origin="accuracy fallback for b")  # another key than b
    history = History(winner=retried.key, winner_run=3, winner_recipe=retried)
    plan = history.winner_first(_plan("a", "b"))
    assert [p.recipe.label for p in plan] == ["eager", "b+keep2", "a", "b"]
    assert plan[1].recipe.origin == "accuracy fallback for b; won run 3 of this model here: tried first"
    assert [p.recipe.label for p in history.winner_first(_plan("a"))] == ["eager", "a"]  # its base is not planned


@pytest.mark.slow
def test_a_repeat_run_loads_the_previous_winners_artifact_instead_of_building_it(tmp_path, monkeypatch):
    from plugins_for_tests import BUILD_LOG, logged_builds

    log = tmp_path / "builds.log"
    monkeypatch.setenv(BUILD_LOG, str(log))
    model, x = tiny_mlp()
    kw = dict(recipes=[SlowEagerRuntime.recipe(), CountingRuntime.recipe()], store=tmp_path / "runs.db", progress=False,
              measure_time_s=0.2, executor=InProcessExecutor())
    first = hone.optimize(model, x, **kw)
    assert first.selection.best.label == "test_counting" and len(logged_builds(log, "test_counting")) == 1

    second = hone.optimize(model, x, **kw)
    assert len(logged_builds(log, "test_counting")) == 1  # not built again
    winner = next(r for r in second.results if r.recipe.label == "test_counting")
    assert winner.ok and winner.build["loaded_from_run"] == first.run.run_id and winner.measurement.n
    assert any("loaded the artifact run" in note for note in winner.summary)
    # The repeat run keeps its own copy: the winner exports and loads from this run's store.
    out = second.export(tmp_path / "out")
    with torch.no_grad():
        assert torch.allclose(hone.load(out)(x)[0], model(x), atol=1e-5)
    # Another library version: the artifact is not trusted, the winner is built again.
    versions = api._versions()
    monkeypatch.setattr(api, "_versions", lambda: {**versions, "torch": "0.0.0"})
    hone.optimize(model, x, **kw)
    assert len(logged_builds(log, "test_counting")) == 2


@pytest.mark.slow
def test_a_repeat_run_plans_from_the_earlier_profile_and_explore_profiles_again(tmp_path, monkeypatch):
    profiled = []
    real = api._profile_for_plan
    monkeypatch.setattr(api, "_profile_for_plan", lambda *a: profiled.append(1) or real(*a))
    model, x = tiny_mlp()
    kw = dict(include=["eager"], store=tmp_path / "runs.db", progress=False, measure_time_s=0.2,
              executor=InProcessExecutor())
    first = hone.optimize(model, x, **kw)
    assert len(profiled) == 1 and first.run.profile["findings"] is not None
    second = hone.optimize(model, x, **kw)
    assert len(profiled) == 1  # planned from the first run's profile
    assert second.run.profile["reused_from_run"] == first.run.run_id
    assert second.run.profile["findings"] == first.run.profile["findings"]
    hone.optimize(model, x, explore=True, **kw)
    assert len(profiled) == 2
    # Another library version: profiled again.
    versions = api._versions()
    monkeypatch.setattr(api, "_versions", lambda: {**versions, "torch": "0.0.0"})
    hone.optimize(model, x, **kw)
    assert len(profiled) == 3
