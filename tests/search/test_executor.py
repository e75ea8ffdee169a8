"""The executor seam: a job and its payload bytes are all an executor gets. An executor that
runs jobs in this process, from the bytes alone, gives the sweep the same results as the
subprocess executor."""

from __future__ import annotations

import pytest

from hone.bench.measure import MeasureSettings
from hone.config import NoConfig
from hone.search.planner import PlannedRecipe
from hone.search.recipe import Recipe, Step
from hone.search.sweep import SweepSettings, sweep
from hone.validate.reference import compute_reference
from hone.validate.verdict import AccuracyBudget
from executor_outcome import outcome, tiny_workload
from in_process_executor import InProcessExecutor
from plugins_for_tests import CountingRuntime, ShapeBoundRuntime, WrongRuntime


@pytest.mark.slow
def test_an_in_process_executor_from_the_payload_bytes_matches_the_subprocess_one(tmp_path):
    workload = tiny_workload()
    reference = compute_reference(workload)
    eager = Recipe("eager", (), Step("eager", NoConfig()), baseline=True)
    planned = [PlannedRecipe(r) for r in (eager, CountingRuntime.recipe(), ShapeBoundRuntime.recipe(), WrongRuntime.recipe())]
    settings = SweepSettings(device="cpu", threads=1, timeout_s=300, accuracy_budget=AccuracyBudget(0.01),
                             measure=MeasureSettings(max_time_s=0.2))

    local = InProcessExecutor()
    here = sweep(planned, workload, reference, settings, executor=local, artifacts_dir=tmp_path / "a")
    there = sweep(planned, workload, reference, settings, artifacts_dir=tmp_path / "b")  # the default: subprocesses
    assert outcome(here) == outcome(there)
    assert len(local.payload_sizes) == 4 and len(set(local.payload_sizes)) == 1  # one payload, made once
    statuses = {label: status for (label, _), (status, *_) in outcome(here).items()}
    assert statuses["test_wrong"].value == "wrong_answer" and statuses["test_counting"].value == "ok"
