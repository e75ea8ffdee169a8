"""The Python API with live modules: named outputs, resume, models defined in a user's script."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import re
import textwrap
from pathlib import Path

import pytest
import torch

import hone
from hone.errors import InputError
from hone.search.result import Status
from in_process_executor import InProcessExecutor
from plugins_for_tests import RaiseRuntime, WrongRuntime
from tiny_models import TinyConv, tiny_mlp

pytestmark = pytest.mark.slow


def test_live_module_with_dict_outputs_and_the_measured_winner_loaded(monkeypatch):
    torch.manual_seed(0)
    model, x = TinyConv().eval(), torch.randn(2, 3, 8, 8)
    result = hone.optimize(model, x, store=False, progress=False, measure_time_s=0.3, include=["channels-last"])
    assert result.run.output_names == ["logits", "features"]
    assert {r.recipe.label for r in result.results} == {"eager", "channels-last"}
    assert all(r.status is Status.OK for r in result.results)
    best = result.best[0]
    assert best.artifact["input_sets"] == ["bs2"] and len(best.artifact["sha256"]) == 64
    import hone.search.build as build_module
    from hone.runtimes.base import Runtime

    def rebuilt(*args, **kwargs):
        raise AssertionError("the winner was rebuilt instead of loaded")

    monkeypatch.setattr(Runtime, "build", rebuilt)
    monkeypatch.setattr(build_module, "build_recipe", rebuilt)
    runner = result.runner()  # the artifact its worker saved, checked and loaded
    logits, features = runner(x)
    expected = model(pixels=x)
    torch.testing.assert_close(logits, expected["logits"])
    assert "best:" in result.table()
    # A run without a store keeps its artifacts as long as its result lives.
    where = Path(best.artifact["dir"])
    assert where.is_dir()
    del result, runner
    import gc

    gc.collect()
    assert not where.exists()


def test_resume_skips_finished_candidates(tmp_path):
    db = tmp_path / "runs.db"
    model, x = tiny_mlp()
    recipes = [RaiseRuntime.recipe(), WrongRuntime.recipe()]
    # In this process (tests/in_process_executor.py): resuming is under test, not the workers.
    kw = dict(recipes=recipes, store=db, progress=False, measure_time_s=0.3, executor=InProcessExecutor())
    first = hone.optimize(model, x, **kw)
    run_id = first.run.run_id
    # Simulate an interruption after two candidates: the last one never got stored.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET status = 'running', finished_at = NULL WHERE id = ?", (run_id,))
        conn.execute("DELETE FROM candidates WHERE run_id = ? AND label = 'test_wrong'", (run_id,))
    resumed = hone.optimize(model, x, resume=True, **kw)
    assert resumed.run.run_id == run_id
    eager_before = next(r for r in first.results if r.recipe.label == "eager")
    eager_after = next(r for r in resumed.results if r.recipe.label == "eager")
    assert eager_after.measurement.times_s == eager_before.measurement.times_s  # not re-run
    assert {r.recipe.label: r.status for r in resumed.results}["test_wrong"] is Status.WRONG_ANSWER
    # A finished run is not resumed: a new run starts.
    again = hone.optimize(model, x, resume=True, **kw)
    assert again.run.run_id != run_id


def test_model_class_defined_in_the_users_script(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent("""
        import torch, hone

        class ScriptNet(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(8, 3)
            def forward(self, x):
                return self.fc(x)

        if __name__ == "__main__":
            result = hone.optimize(ScriptNet(), torch.randn(4, 8), store=False, progress=False,
                                   measure_time_s=0.3, recipes=[])
            print("STATUS", [r.status.value for r in result.results])
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "STATUS ['ok']" in out.stdout


def test_optimize_follows_the_profile_and_says_why():
    """A 20 µs MLP is mostly fixed per-call cost: the recipe right after the baseline is planned
    because of the profile's leading finding (on overhead, ONNX Runtime, the advice's rank 1),
    where overhead dominates (its share at or over OVERHEAD_DOMINATES) bf16 is pruned (it adds
    casts and saves no dispatch), and the report says so. The shares are this CPU's: on a Zen 3
    the MLP is about half overhead, half memory-bound ops; on a Xeon overhead dominates."""
    from hone.profiler.advice import OVERHEAD_DOMINATES

    model, x = tiny_mlp()
    result = hone.optimize(model, x, store=False, progress=False, measure_time_s=0.3, time_budget_s=40)
    profile = result.run.profile
    shares = profile["shares"]
    assert profile["verdict"] == max(shares, key=shares.get) and profile["verdict"] in ("overhead", "memory")
    labels = [r.recipe.label for r in result.results]
    second = result.results[1] if labels[0] == "eager" else None
    assert second is not None and second.recipe.origin.split(":")[0] in {f["finding"].split(":")[0] for f in profile["findings"]}
    if profile["verdict"] == "overhead":
        assert labels[1] == "onnxruntime" and second.recipe.origin.startswith("overhead-bound:")
    table = result.table()
    assert "planned because" in table
    pruned = result.run.pruned.get("bf16", "")  # the composer labels it "bf16"
    if shares["overhead"] >= OVERHEAD_DOMINATES:
        assert "bf16" not in labels and "overhead-bound" in pruned and "not planned: bf16" in table
    else:  # overhead does not dominate: lower precision may still pay for the memory-bound rest
        assert "overhead-bound" not in pruned


def test_quantized_recipes_without_a_calibration_set_are_warned_about():
    from hone.api import _calibration_warnings
    from hone.search.planner import PlannedRecipe
    from hone.search.recipe import Recipe, Step
    from hone.config import NoConfig
    from hone.models.workload import InputSet, Workload

    from hone.passes.torch.dynamic_int8 import DynamicInt8Config
    from hone.passes.torch.pt2e_int8 import Pt2eInt8Config

    int8 = PlannedRecipe(Recipe("some-int8", (Step("pt2e_int8", Pt2eInt8Config()),), Step("eager", NoConfig()), compute_dtype="int8"))
    # Dynamic int8 fits no ranges ahead of time: no calibration, so nothing to warn about.
    dynamic = PlannedRecipe(Recipe("dyn", (Step("dynamic_int8", DynamicInt8Config()),), Step("eager", NoConfig()), compute_dtype="int8"))
    fp32 = PlannedRecipe(Recipe("eager", (), Step("eager", NoConfig())))
    w = Workload("w", torch.nn.Identity(), [InputSet("bs2", {"x": torch.zeros(2, 3)})])
    assert _calibration_warnings(w, [fp32, dynamic]) == []
    warning = _calibration_warnings(w, [fp32, int8, dynamic])[0]
    assert "no calibration set" in warning and "some-int8" in warning and "dyn" not in warning
    w.calibration = {"x": torch.zeros(8, 3)}
    assert _calibration_warnings(w, [fp32, int8]) == []


class _CountingModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.fc(x)


@pytest.mark.parametrize(
    "calibration, message",
    [
        (torch.randn(16, 9), "input 'x' has shape [16, 9]"),
        (torch.randn(16, 8, 1), "every dimension but the first"),
        (torch.randn(16, 8).double(), "torch.float64"),
        ({"y": torch.randn(16, 8)}, "has inputs ['y']"),
    ],
)
def test_calibration_of_the_wrong_form_is_refused_before_any_work(calibration, message):
    model = _CountingModel()
    with pytest.raises(InputError, match=re.escape(message)):
        hone.optimize(model, torch.randn(4, 8), calibration=calibration, store=False, progress=False)
    assert model.calls == 0  # not even the reference ran


def test_train_set_labels_must_match_its_samples():
    from hone.models.workload import TrainSet

    bad = TrainSet({"x": torch.randn(10, 8)}, step=lambda m, i, l: m(*i)[0].sum(), labels=torch.zeros(9, dtype=torch.long))
    with pytest.raises(InputError, match="10 samples but 9 labels"):
        hone.optimize(_CountingModel(), torch.randn(4, 8), train=bad, store=False, progress=False)
