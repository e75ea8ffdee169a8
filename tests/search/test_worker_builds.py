"""One build, every input set: a worker reuses its build where the runner serves the next set's
inputs and rebuilds for a set it does not, records every build, and saves the artifacts of a
recipe that could win (in this process: search.execute, as a worker runs it)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
import torch

import hone
from hone.bench.measure import MeasureSettings
from hone.models.workload import normalize_outputs
from hone.search._child import Stage
from hone.search.build import step_paths
from hone.search.execute import execute
from hone.search.job import Bundle, Job
from plugins_for_tests import (
    BUILD_LOG, CountingRuntime, NoSaveRuntime, NotGeneralisingRuntime, OverclaimingRuntime, ShapeBoundRuntime,
    WrongRuntime, logged_builds,
)
from tiny_models import TinyMLP

FAST = MeasureSettings(max_time_s=0.2, warmup_max_s=0.05, min_time_s=0.05, min_samples=5)
SETS = {"bs2": 2, "bs8": 8}


def _bundle(model: torch.nn.Module) -> Bundle:
    torch.manual_seed(1)
    inputs = {label: (torch.randn(batch, 32),) for label, batch in SETS.items()}
    with torch.inference_mode():
        reference = {label: tuple(normalize_outputs(model(x=x)).values()) for label, (x,) in inputs.items()}
    return Bundle(module=model, input_names=["x"], output_names=["output"], inputs=inputs, reference=reference,
                  extra_atol={}, batch_axes=[0])


def _run(tmp_path: Path, recipe, *, best_speedup: float | None = None, baseline_p50=None, **job_kw) -> dict:
    model = TinyMLP().eval()
    bundle = _bundle(model)
    job = Job(
        recipe=recipe.to_dict(), step_paths=step_paths(recipe), input_sets=list(SETS), bundle_path="",
        workdir=str(tmp_path / "work"), result_path=str(tmp_path / "result.json"), threads=1, device="cpu",
        accuracy_budget=0.01, measure=dataclasses.asdict(FAST), sys_path=[], artifact_dir=str(tmp_path / "artifacts"),
        baseline_p50=baseline_p50 if baseline_p50 is not None else {s: 1.0 for s in SETS}, best_speedup=best_speedup,
        **job_kw,
    )
    result: dict = {"sets": {}}
    writes: list[list[str]] = []

    def write() -> None:  # what the result file holds after each write
        writes.append(list(result["sets"]))

    execute(job, bundle, Stage(), result, write, time.perf_counter())
    result["writes"] = writes
    result["bundle"] = bundle
    return result


@pytest.fixture
def build_log(tmp_path, monkeypatch):
    path = tmp_path / "builds.log"
    monkeypatch.setenv(BUILD_LOG, str(path))
    return path


def test_a_runner_that_serves_every_set_is_built_once(tmp_path, build_log):
    result = _run(tmp_path, CountingRuntime.recipe())
    sets = result["sets"]
    assert [e["status"] for e in sets.values()] == ["ok", "ok"], [e["reason"] for e in sets.values()]
    assert len(logged_builds(build_log)) == 1  # one build, for the first set
    assert sets["bs2"]["build"] == {"index": 0, "built_for": "bs2", "build_s": sets["bs2"]["build"]["build_s"],
                                    "reused": False}
    assert sets["bs8"]["build"] == {**sets["bs2"]["build"], "reused": True}
    assert sets["bs2"]["build"]["build_s"] > 0
    # Each set is validated and timed at its own inputs; the reused build's cost stays on record.
    assert sets["bs8"]["measurement"]["batch_size"] == 8
    assert sets["bs8"]["measurement"]["build_s"] == sets["bs2"]["measurement"]["build_s"]
    assert all(e["wall_s"] > 0 for e in sets.values())
    assert result["writes"][0] == ["bs2"] and result["writes"][-1] == ["bs2", "bs8"]  # rewritten after each set
    # One artifact, for both sets, loadable and checked.
    artifact = sets["bs2"]["artifact"]
    assert artifact == sets["bs8"]["artifact"] and artifact["input_sets"] == ["bs2", "bs8"]
    loaded = hone.load(artifact["dir"])  # checks its example inputs' outputs
    x = result["bundle"].inputs["bs2"][0]
    torch.testing.assert_close(loaded(x)[0], result["bundle"].reference["bs2"][0])


def test_a_runner_that_does_not_serve_another_shape_is_rebuilt_in_the_same_worker(tmp_path, build_log):
    result = _run(tmp_path, ShapeBoundRuntime.recipe())
    sets = result["sets"]
    assert [e["status"] for e in sets.values()] == ["ok", "ok"]
    builds = logged_builds(build_log)
    assert [shape for _, shape in builds] == [[2, 32], [8, 32]]
    assert len({pid for pid, _ in builds}) == 1  # in the same process
    records = [sets[s]["build"] for s in SETS]
    assert [(b["index"], b["built_for"], b["reused"]) for b in records] == [(0, "bs2", False), (1, "bs8", False)]
    assert all(b["build_s"] > 0 for b in records)  # both builds' times recorded
    # One artifact per build, each for the set it was built for.
    dirs = [sets[s]["artifact"]["dir"] for s in SETS]
    assert len(set(dirs)) == 2 and [sets[s]["artifact"]["input_sets"] for s in SETS] == [["bs2"], ["bs8"]]
    manifests = [json.loads((Path(d) / "manifest.json").read_text()) for d in dirs]
    assert [m["inputs"][0]["shape"] for m in manifests] == [[2, 32], [8, 32]]
    assert [list(m["p50_s"]) for m in manifests] == [["bs2"], ["bs8"]]


def test_per_set_builds_and_a_reused_build_give_the_same_answers(tmp_path, build_log):
    once = _run(tmp_path / "once", CountingRuntime.recipe())["sets"]
    per_set = _run(tmp_path / "per-set", ShapeBoundRuntime.recipe())["sets"]
    for s in SETS:
        assert once[s]["verdict"]["outputs"] == per_set[s]["verdict"]["outputs"]


def test_a_recipe_slower_than_the_best_so_far_saves_nothing(tmp_path, build_log):
    result = _run(tmp_path, ShapeBoundRuntime.recipe(), best_speedup=1e9)
    sets = result["sets"]
    assert all(e["status"] == "ok" and e.get("artifact") is None for e in sets.values())
    # The first build was saved before it was replaced, then deleted: nothing is left.
    artifacts = tmp_path / "artifacts"
    assert not artifacts.exists() or not any(artifacts.rglob("*.pt2"))


def test_the_baseline_always_saves(tmp_path, build_log):
    baseline = dataclasses.replace(CountingRuntime.recipe(), baseline=True)
    sets = _run(tmp_path, baseline, best_speedup=1e9, baseline_p50={})["sets"]
    assert all(e["artifact"] and e["artifact"]["dir"] for e in sets.values())


def test_a_runner_without_a_saved_form_records_why(tmp_path):
    sets = _run(tmp_path, NoSaveRuntime.recipe())["sets"]
    assert all(e["status"] == "ok" for e in sets.values())
    assert all("has no saved form" in e["artifact"]["unsaved"] for e in sets.values())


def test_stop_at_failure_leaves_the_remaining_sets(tmp_path):
    result = _run(tmp_path, WrongRuntime.recipe(), stop_at_failure=True)
    assert list(result["sets"]) == ["bs2"] and result["sets"]["bs2"]["status"] == "wrong_answer"
    assert result["finished"] is True


@pytest.mark.parametrize("runtime, why", [(OverclaimingRuntime, "Guard failed"), (NotGeneralisingRuntime, "max abs err")])
def test_a_build_that_claims_a_set_and_fails_there_is_replaced_by_one_of_its_own(tmp_path, build_log, runtime, why):
    sets = _run(tmp_path, runtime.recipe())["sets"]
    assert [e["status"] for e in sets.values()] == ["ok", "ok"], [e["reason"] for e in sets.values()]
    assert [shape for _, shape in logged_builds(build_log)] == [[2, 32], [8, 32]]
    build = sets["bs8"]["build"]
    assert (build["index"], build["built_for"], build["reused"]) == (1, "bs8", False)
    assert build["reuse_failed"]["built_for"] == "bs2" and why in build["reuse_failed"]["reason"]
    assert any("claimed to serve bs8 but failed there" in note for note in sets["bs8"]["summary"])
    # Each set has the artifact of the build that served it.
    assert [sets[s]["artifact"]["input_sets"] for s in SETS] == [["bs2"], ["bs8"]]


def test_a_build_failing_everywhere_is_not_rebuilt_for_each_set(tmp_path, build_log):
    sets = _run(tmp_path, WrongRuntime.recipe())["sets"]
    assert [e["status"] for e in sets.values()] == ["wrong_answer", "wrong_answer"]
    assert sets["bs8"]["build"]["reused"] is True and "reuse_failed" not in sets["bs8"]["build"]
