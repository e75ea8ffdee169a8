"""The sweep runs one worker per recipe for all input sets: one build where the runner serves
every set, a rebuild in the same worker where it does not, a crash at a later set keeping the
earlier ones, a resumed run carrying only the missing sets, and only the winner's artifact
left once the sweep is over."""

from __future__ import annotations

import pytest
import torch

import hone
from hone.search.planner import PlannedRecipe
from hone.search.result import Status
from hone.search.select import select
from hone.search.sweep import SweepSettings, sweep
from hone.validate.verdict import AccuracyBudget
from hone.bench.measure import MeasureSettings
from plugins_for_tests import BUILD_LOG, AbortAtOtherShapeRuntime, CountingRuntime, ShapeBoundRuntime, logged_builds
from tiny_models import TinyMLP

pytestmark = pytest.mark.slow  # each recipe is a fresh interpreter (a few seconds)


def _workload():
    from hone.models.workload import InputSet, Workload

    torch.manual_seed(0)
    return Workload("tiny", TinyMLP().eval(), [InputSet("bs2", {"x": torch.randn(2, 32)}),
                                               InputSet("bs8", {"x": torch.randn(8, 32)})])


@pytest.fixture
def build_log(tmp_path, monkeypatch):
    path = tmp_path / "builds.log"
    monkeypatch.setenv(BUILD_LOG, str(path))  # workers inherit the environment
    return path


def test_one_worker_per_recipe_builds_once_or_per_shape(build_log):
    result = hone.optimize(_workload(), recipes=[CountingRuntime.recipe(), ShapeBoundRuntime.recipe()],
                           store=False, progress=False, measure_time_s=0.3, profile_first=False)
    by = {(r.recipe.label, r.input_set): r for r in result.results}
    assert all(r.status is Status.OK for r in result.results), [(k, r.reason) for k, r in by.items()]
    counting = logged_builds(build_log, "test_counting")
    assert [shape for _, shape in counting] == [[2, 32]]  # one build served both sets
    shape_bound = logged_builds(build_log, "test_shape_bound")
    assert [shape for _, shape in shape_bound] == [[2, 32], [8, 32]]
    assert len({pid for pid, _ in shape_bound}) == 1  # rebuilt in the same worker
    assert by[("test_counting", "bs8")].build["reused"] and not by[("test_shape_bound", "bs8")].build["reused"]
    assert by[("test_shape_bound", "bs8")].build["built_for"] == "bs8"
    assert all(by[("test_shape_bound", s)].build["build_s"] > 0 for s in ("bs2", "bs8"))
    # Results stay per (recipe, input set), with a wall time each (test_share_wall: how a
    # worker's life is shared among them).
    assert all(r.wall_s > 0 for r in result.results)
    # eager: 1 build, test_counting: 1, test_shape_bound: 2.
    assert result.build_count() == (4, 6)
    assert "4 builds for 6 candidates" in result.table()
    assert result.to_dict()["builds"] == {"builds": 4, "candidates": 6}
    # The same answers whether a build was reused or made for the set.
    for s in ("bs2", "bs8"):
        assert by[("test_counting", s)].verdict.outputs == by[("test_shape_bound", s)].verdict.outputs


def test_a_crash_at_the_second_set_keeps_the_first():
    result = hone.optimize(_workload(), recipes=[AbortAtOtherShapeRuntime.recipe()], store=False, progress=False,
                           measure_time_s=0.3, profile_first=False)
    by = {r.input_set: r for r in result.results if r.recipe.label == "test_abort_at_other_shape"}
    assert by["bs2"].status is Status.OK and by["bs2"].measurement is not None and by["bs2"].build is not None
    assert by["bs8"].status is Status.CRASHED and "SIGABRT" in by["bs8"].reason
    assert "aborting at shapes ((8, 32),)" in by["bs8"].log_tail  # the worker's stderr tail
    assert by["bs8"].wall_s > 0  # the time it spent there before dying
    assert "test_abort_at_other_shape: crashed at bs8" in result.table()


def _settings() -> SweepSettings:
    return SweepSettings(device="cpu", threads=1, timeout_s=300, accuracy_budget=AccuracyBudget(0.01),
                         measure=MeasureSettings(max_time_s=0.3))


def test_sweep_progress_resume_and_the_winners_artifact(tmp_path, build_log):
    from hone.config import NoConfig
    from hone.search.recipe import Recipe, Step
    from hone.validate.reference import compute_reference

    workload = _workload()
    reference = compute_reference(workload)
    eager = Recipe("eager", (), Step("eager", NoConfig()), baseline=True)
    planned = [PlannedRecipe(eager), PlannedRecipe(CountingRuntime.recipe()), PlannedRecipe(ShapeBoundRuntime.recipe())]
    starts, reported = [], []
    artifacts = tmp_path / "artifacts" / "run-1"
    results = sweep(planned, workload, reference, _settings(), artifacts_dir=artifacts, on_start=starts.append,
                    on_result=lambda r, resumed: reported.append((r.recipe.label, r.input_set, resumed)))
    assert starts == ["eager @ bs2, bs8", "test_counting @ bs2, bs8", "test_shape_bound @ bs2, bs8"]
    assert len(reported) == 6 and not any(resumed for *_, resumed in reported)
    # Only the winner's artifacts are left (whichever won: these time alike), under the run's
    # directory, and they load.
    best = select(results).best
    kept = {r.artifact["dir"] for r in results if r.recipe.key == best.key}
    on_disk = {str(p) for p in artifacts.glob("*/*")}
    assert kept and on_disk == kept
    assert all(str(artifacts) in d for d in kept)
    for d in kept:
        hone.load(d)

    # Resume without test_counting at bs8: only that set runs, in a worker of its own.
    lost = next(r for r in results if r.recipe.label == "test_counting" and r.input_set == "bs8")
    done = {(r.recipe.key, r.input_set): r for r in results if r is not lost}
    before = len(logged_builds(build_log))
    starts.clear()
    again = sweep(planned, workload, reference, _settings(), done=done, artifacts_dir=artifacts, on_start=starts.append)
    assert starts == ["test_counting @ bs8"]
    assert [shape for _, shape in logged_builds(build_log)[before:]] == [[8, 32]]
    rerun = next(r for r in again if r.recipe.label == "test_counting" and r.input_set == "bs8")
    assert rerun.status is Status.OK and rerun.build["built_for"] == "bs8" and not rerun.build["reused"]
    assert [r for r in again if r is not rerun] == [r for r in results if r is not lost]


def test_share_wall_gives_the_workers_unaccounted_time_to_the_first_set_without_a_time_of_its_own():
    from hone.config import NoConfig
    from hone.search.recipe import Recipe, Step
    from hone.search.result import CandidateResult
    from hone.search.worker import share_wall

    recipe = Recipe("eager", (), Step("eager", NoConfig()))

    def results(*walls):
        return [CandidateResult(recipe, f"bs{i}", Status.OK, "", wall_s=w) for i, w in enumerate(walls)]

    finished = results(0.5, 0.2)
    share_wall(finished, 3.0)  # the start, the load and the exit: 2.3 s no set timed
    assert [r.wall_s for r in finished] == pytest.approx([2.8, 0.2])
    died = results(0.5, 0.0)  # the second set's worker died: its set has no time of its own
    share_wall(died, 3.0)
    assert [r.wall_s for r in died] == pytest.approx([0.5, 2.5])
    over = results(0.5, 0.2)  # clocks that disagree never take time away
    share_wall(over, 0.6)
    assert [r.wall_s for r in over] == pytest.approx([0.5, 0.2])
