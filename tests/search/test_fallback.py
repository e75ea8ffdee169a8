"""Accuracy-driven fallback: a harmful quantization fails the gate, the fallback finds the layer
that hurts, keeps it in float and the retry passes; for every backend's quantization pass."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hone.models.workload import EvalSet
from hone.passes.quantize import Scheme
from hone.registry import PASSES, RUNTIMES
from hone.search.fallback import FallbackSettings, fallback, kept_counts, missed_budget, retry_recipe
from hone.search.result import CandidateResult, Status
from hone.validate.check import check_metric, check_tensors, eval_outputs, verdict_of
from hone.validate.sensitivity import rank_layers
from hone.validate.verdict import AccuracyBudget, OutputCheck, Verdict
from harness import build
from tiny_models import OutlierMLP, outlier_data

# Labels are fp32's own argmax on random data, so near-ties flip under any int8 rounding: two
# points of top-1 is the budget here, against the 20+ points the outlier layer costs.
BUDGET = AccuracyBudget(0.02)


def _recipe(label: str):
    from hone.hardware import probe
    from hone.models.workload import InputSet, Workload

    workload = Workload("outlier", OutlierMLP().eval(), [InputSet("bs8", {"x": outlier_data(8)})])
    hw = probe(measure_peaks=False)
    for cls in [*PASSES, *RUNTIMES]:
        for recipe in cls.propose(workload, hw, "cpu"):
            if recipe.label == label:
                return recipe
    raise LookupError(label)


class InProcess:
    """Runs a recipe the way a worker does (build, validate on the eval set) but in this
    process, so the test is about the fallback and the passes, not process isolation."""

    def __init__(self):
        self.model = OutlierMLP().eval()
        self.eval_x = outlier_data(256, seed=1)
        with torch.no_grad():
            self.eval_ref = self.model(self.eval_x)
        # Labels are fp32's own predictions: fp32 scores 1.0 and any damage shows.
        self.eval = EvalSet({"x": self.eval_x}, "top1", labels=self.eval_ref.argmax(-1))
        self.calibration = (outlier_data(64, seed=2),)
        self.example = outlier_data(8, seed=3)
        self.ran: list[str] = []

    def run(self, recipe) -> list[CandidateResult]:
        self.ran.append(recipe.label)
        runner, artifact, named, expected = build(recipe, self.model, self.example, calibration=self.calibration)
        checks = check_tensors(runner(*named.values()), tuple(expected.values()), list(expected), artifact.compute_dtype)
        produced = eval_outputs(runner, self.eval, 8, ["output"], [0])
        metric = check_metric(produced, {"output": self.eval_ref}, self.eval, 1.0, BUDGET)
        verdict = verdict_of(checks, metric, artifact.compute_dtype)
        status = Status.OK if verdict.passed else Status.WRONG_ANSWER
        return [CandidateResult(recipe, "bs8", status, verdict.reason, verdict, runner_info=runner.report())]

    def rank(self, quant_pass):
        return rank_layers(self.model, self.calibration, ["x"], ["output"], quant_pass.scheme(), quant_pass.layer_types)


BACKENDS = [
    pytest.param("torch-int8-dynamic", id="pytorch-dynamic"),
    pytest.param("pt2e-int8", id="pytorch-pt2e"),
    pytest.param("ort-int8-dynamic", id="onnxruntime-dynamic"),
    pytest.param("ort-int8-static", id="onnxruntime-static"),
    pytest.param("openvino-int8", id="openvino-nncf"),
]


@pytest.mark.slow
@pytest.mark.parametrize("label", BACKENDS)
def test_harmful_quantization_fails_then_fallback_restores_accuracy(label):
    for package in {"openvino": ("openvino", "nncf"), "pt2e": ("torchao",)}.get(label.split("-")[0], ()):
        pytest.importorskip(package)
    env = InProcess()
    recipe = _recipe(label)
    first = env.run(recipe)
    assert first[0].status is Status.WRONG_ANSWER, first[0].reason  # the harm is real
    assert first[0].verdict.metric.value < 0.9

    retried = fallback(recipe, first, env.rank, env.run, FallbackSettings())
    last = retried[-1]
    assert last.ok, last.reason
    assert last.verdict.metric.value >= 1.0 - BUDGET.value
    step = next(s for s in last.recipe.passes if s.name == recipe.passes[-1].name)
    assert step.config.keep_float == ("fc2",)  # the outlier layer, found by ranking, nothing else
    assert last.recipe.label == f"{label}+keep1" and "most sensitive" in last.recipe.origin
    assert last.runner_info["steps"][step.name]["kept_float"] == ["fc2"]  # the pass reports what it kept


def test_sensitivity_ranks_the_outlier_layer_first_for_activation_schemes_only():
    env = InProcess()
    for scheme in (Scheme(), Scheme(activations="dynamic")):
        ranked = rank_layers(env.model, env.calibration, ["x"], ["output"], scheme, ("Linear",))
        assert [r.name for r in ranked][0] == "fc2"
        assert ranked[0].error > 100 * ranked[1].error
    # Weight-only rounding does not see the activation outlier: no layer stands out like that.
    weights = rank_layers(env.model, env.calibration, ["x"], ["output"], Scheme(activations="none"), ("Linear",))
    assert weights[0].error < 0.01


def test_kept_counts_grow_geometrically_to_the_bound():
    assert kept_counts(37, FallbackSettings()) == [2, 5, 10]  # bound: a quarter of 37
    assert kept_counts(3, FallbackSettings()) == [1]
    assert kept_counts(100, FallbackSettings(attempts=1, max_kept_fraction=0.1)) == [10]


def test_retry_recipe_adds_to_the_users_kept_layers_and_is_a_new_candidate():
    recipe = _recipe("torch-int8-dynamic")
    user = dataclasses.replace(recipe.passes[0].config, keep_float=("a",))
    recipe = dataclasses.replace(recipe, passes=(dataclasses.replace(recipe.passes[0], config=user),))
    retried = retry_recipe(recipe, 0, ["b", "a"], "test")
    assert retried.passes[0].config.keep_float == ("a", "b")
    assert retried.key != recipe.key and retried.label == "torch-int8-dynamic+keep2"


def _wrong(nonfinite: int = 0) -> CandidateResult:
    check = OutputCheck("out", 1.0, 1.0, 0.5, 0.1, 0.1, nonfinite, False)
    return CandidateResult(_recipe("torch-int8-dynamic"), "bs8", Status.WRONG_ANSWER, "x", Verdict(False, "x", "int8", (check,)))


def test_no_fallback_for_broken_models_or_when_off():
    assert missed_budget([_wrong()])
    assert not missed_budget([_wrong(nonfinite=3)])  # NaN is a bug, not a sensitive layer
    calls = []
    run = lambda r: calls.append(r) or []  # noqa: E731
    assert fallback(_recipe("torch-int8-dynamic"), [_wrong(3)], lambda p: [], run, FallbackSettings()) == []
    assert fallback(_recipe("torch-int8-dynamic"), [_wrong()], lambda p: [], run, FallbackSettings(attempts=0)) == []
    assert fallback(_recipe("torch-int8-dynamic"), [_wrong()], lambda p: [], run, FallbackSettings()) == []  # nothing ranked
    not_quantized = dataclasses.replace(_wrong(), recipe=_recipe("inductor"))
    assert fallback(not_quantized.recipe, [not_quantized], lambda p: [], run, FallbackSettings()) == []
    assert calls == []


@pytest.mark.slow
def test_optimize_runs_the_fallback_in_workers_and_reports_the_kept_layers():
    import hone
    from hone.report.console import render_text

    from plugins_for_tests import SlowEagerRuntime

    env = InProcess()
    recipe = _recipe("torch-int8-dynamic")
    # A slow baseline: on a model this small int8 is slower than eager, and a retry that cannot
    # beat the best so far is not run (test_a_retry_that_cannot_pay_is_not_run_and_says_why).
    result = hone.optimize(
        env.model, env.example, eval=env.eval, calibration=env.calibration[0], recipes=[SlowEagerRuntime.recipe(), recipe],
        accuracy_budget=BUDGET, store=False, progress=False, profile_first=False, measure_time_s=0.5,
    )
    by_label = {r.recipe.label: r for r in result.results}
    assert by_label["torch-int8-dynamic"].status is Status.WRONG_ANSWER
    assert by_label["torch-int8-dynamic"].screen_p50_s is not None  # timed for the fallback's judgement
    assert not any("fallback retries" in label for label in result.run.pruned)
    retried = by_label["torch-int8-dynamic+keep1"]
    assert retried.ok and retried.recipe.kept_float == ("fc2",)
    step = retried.recipe.passes[0].name
    assert retried.runner_info["steps"][step]["kept_float"] == ["fc2"]  # read back from the worker's pass
    text = render_text(result)
    assert "torch-int8-dynamic+keep1: fc2" in text and "accuracy fallback for torch-int8-dynamic" in text


def test_a_ranking_that_fails_costs_the_fallback_not_the_sweep(caplog):
    import logging

    caplog.set_level(logging.WARNING, logger="hone.search.fallback")  # whatever earlier tests set

    def broken(_pass):
        raise RuntimeError("hook refused")

    calls = []
    out = fallback(_recipe("torch-int8-dynamic"), [_wrong()], broken, lambda r: calls.append(r) or [], FallbackSettings())
    assert out == [] and calls == []
    assert "ranking layers failed: RuntimeError: hook refused" in caplog.text


def _ranked(p) -> list:
    from hone.validate.sensitivity import LayerSensitivity

    return [LayerSensitivity(f"layer{i}", 1.0 / (i + 1)) for i in range(8)]


def test_a_retry_that_cannot_pay_is_not_run_and_says_why():
    calls, refused = [], []
    run = lambda r: calls.append(r.label) or [_wrong()]  # noqa: E731 - every retry misses again
    recipe = _recipe("torch-int8-dynamic")
    slow = lambda attempt: "cannot beat the best so far: 30 ms against 8 ms"  # noqa: E731
    assert fallback(recipe, [_wrong()], _ranked, run, FallbackSettings(), slow, lambda *a: refused.append(a)) == []
    assert calls == [] and refused == [("torch-int8-dynamic fallback retries", "cannot beat the best so far: 30 ms against 8 ms")]
    # Judged after each attempt: the first retry runs, its result stops the second.
    verdicts = iter([None, "slower now"])
    attempts = fallback(recipe, [_wrong()], _ranked, run, FallbackSettings(), lambda a: next(verdicts), lambda *a: refused.append(a))
    assert len(calls) == 1 and len(attempts) == 1 and refused[-1][1] == "slower now"


def test_the_sweep_judges_a_retry_from_the_attempts_screening_time():
    from hone.search.sweep import _Runner
    from hone.bench.measurement import Measurement

    runner = _Runner.__new__(_Runner)  # only its record of results matters here
    fast = dataclasses.replace(_wrong(), status=Status.OK, recipe=_recipe("inductor"),
                               measurement=Measurement(times_s=(0.008,) * 5, batch_size=8, threads=1, timer="t"))
    runner.seen = {("k", "bs8"): fast}
    assert runner.cannot_pay([dataclasses.replace(_wrong(), screen_p50_s=0.030)]).startswith("cannot beat the best so far: "
                                                                                            "the last attempt ran 30 ms at bs8 against 8 ms")
    assert runner.cannot_pay([dataclasses.replace(_wrong(), screen_p50_s=0.009)]) is None  # within the margin: it may win
    assert runner.cannot_pay([_wrong()]) is None  # not timed: unknown, so the retry runs


def _missed_metric(drop: float, budget: float = 0.02) -> CandidateResult:
    from hone.validate.verdict import MetricCheck

    check = OutputCheck("out", 1.0, 1.0, 0.5, 0.1, 0.1, 0, False)
    metric = MetricCheck("top1", 1.0 - drop, 1.0, budget, False)
    verdict = Verdict(False, "x", "int8", (check,), metric, tensor_check_advisory=True)
    return CandidateResult(_recipe("torch-int8-dynamic"), "bs8", Status.WRONG_ANSWER, "x", verdict)


def test_a_retry_that_cannot_recover_the_budget_is_not_planned_and_the_arithmetic_is_given():
    from hone.search.fallback import RECOVERY_SLACK
    from hone.validate.sensitivity import LayerSensitivity

    flat = lambda p: [LayerSensitivity(f"layer{i}", 1.0) for i in range(20)]  # noqa: E731 - no layer stands out
    calls, refused = [], []
    run = lambda r: calls.append(r.label) or [_missed_metric(0.5)]  # noqa: E731
    # A 0.5 drop against 0.02 allowed (25x); the most it may keep is 5 of 20 equal layers: 25 x sqrt(0.75) = 21.7x.
    assert fallback(_recipe("torch-int8-dynamic"), [_missed_metric(0.5)], flat, run, FallbackSettings(),
                    on_refused=lambda *a: refused.append(a)) == []
    assert calls == []
    what, why = refused[0]
    assert what == "torch-int8-dynamic fallback retries" and why.startswith("cannot recover the budget")
    assert "missed it 25.0x" in why and "keeping the 5 most sensitive" in why and "= 21.7x" in why
    assert f"{RECOVERY_SLACK:g}x" in why


def test_a_retry_predicted_to_recover_is_planned_and_hopeless_small_steps_are_skipped():
    from hone.validate.sensitivity import LayerSensitivity

    # One layer carries 96 % of the error: keeping it predicts 3 x sqrt(0.04) = 0.6x, a pass.
    one_bad = lambda p: [LayerSensitivity("fc2", 24.0)] + [LayerSensitivity(f"l{i}", 0.1) for i in range(10)]  # noqa: E731
    calls = []
    passed = dataclasses.replace(_missed_metric(0.0), status=Status.OK)
    run = lambda r: calls.append(r) or [passed]  # noqa: E731
    fallback(_recipe("torch-int8-dynamic"), [_missed_metric(0.06)], one_bad, run, FallbackSettings())
    assert [r.kept_float for r in calls] == [("fc2",)]
    # Twelve equal layers, a 4x miss: keeping 1 (sqrt(11/12) = 0.96) cannot recover it, keeping 3 (the
    # bound) predicts 4 x sqrt(0.75) = 3.5x, still beyond: nothing runs. At a 2.2x miss the bound
    # predicts 1.9x: the small steps are skipped and the retry keeps the bound's 3 layers.
    equal = lambda p: [LayerSensitivity(f"l{i}", 1.0) for i in range(12)]  # noqa: E731
    calls.clear()
    fallback(_recipe("torch-int8-dynamic"), [_missed_metric(0.08)], equal, run, FallbackSettings())
    assert calls == []
    fallback(_recipe("torch-int8-dynamic"), [_missed_metric(0.044)], equal, run, FallbackSettings())
    assert [len(r.kept_float) for r in calls] == [3]  # (kept_counts for 12 layers: 1, 2, 3)


def test_without_a_metric_the_miss_is_unknown_and_the_retry_runs():
    from hone.search.fallback import miss_ratio

    assert miss_ratio([_wrong()]) is None  # tensor tolerances only: no single ratio
    assert miss_ratio([_missed_metric(0.1)]) == pytest.approx(5.0)
    calls = []
    fallback(_recipe("torch-int8-dynamic"), [_wrong()], _ranked, lambda r: calls.append(r) or [_wrong()],
             FallbackSettings(attempts=1))
    assert len(calls) == 1
