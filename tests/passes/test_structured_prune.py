"""Structured pruning: FLOPs really go, output shapes stay, recovery recovers, a missed budget
backs off, and the pruned model composes with more than one runtime."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hone.errors import Unsupported
from hone.models.workload import EvalSet, Workload, InputSet
from hone.passes.torch.structured_prune import StructuredPrune, StructuredPruneConfig
from hone.search.compose import parse
from hone.search.fallback import FallbackSettings, back_offs
from hone.search.recipe import Recipe, Step
from hone.search.result import CandidateResult, Status
from hone.validate.check import verdict_of
from hone.validate.verdict import MetricCheck, OutputCheck, Verdict
from harness import build
from tiny_models import PrunableCNN, WideMLP, tiny_bert

pytest.importorskip("torch_pruning")


def _recipe(runtime: str = "eager", **fields) -> Recipe:
    return Recipe(f"prune+{runtime}", (Step("structured_prune", StructuredPruneConfig(**fields)),),
                  Step(runtime, _default_config(runtime)))


def _default_config(runtime: str):
    from hone.registry import RUNTIMES

    return RUNTIMES.get(runtime).Config()


def _workload(module: torch.nn.Module, x: torch.Tensor, eval_set: EvalSet | None = None) -> Workload:
    return Workload("test", module, [InputSet("bs4", {"x": x})], eval=eval_set)


def test_pruning_removes_flops_and_keeps_output_shapes():
    torch.manual_seed(0)
    model, x = PrunableCNN().eval(), torch.randn(4, 3, 8, 8)
    runner, artifact, named, expected = build(_recipe(ratio=0.5, recovery="none"), model, x)
    notes = artifact.notes["structured_prune"]
    assert notes["flops_after"] < 0.6 * notes["flops_before"]  # conv2 loses in and out channels
    assert notes["params_after"] < notes["params_before"]
    assert artifact.approximate  # the metric decides, not the fp32 tolerance
    pruned = artifact.module.module
    assert pruned.conv1.out_channels == 8 and pruned.conv2.out_channels == 8
    assert pruned.head.out_features == 4  # the classes are the output: never pruned
    assert notes["groups_pruned"] == 2 and notes["groups_left_for_outputs"] == 1
    (got,) = runner(*named.values())
    assert got.shape == expected["output"].shape
    assert model.conv1.out_channels == 16  # the user's model is untouched


def test_attention_heads_and_ffn_neurons_are_pruned_whole():
    model = tiny_bert(heads=4)
    ids = torch.randint(0, 100, (2, 12))
    runner, artifact, named, expected = build(_recipe(ratio=0.5, recovery="none"), model, (ids,))
    pruned = artifact.module.module
    attention = pruned.encoder.layer[0].attention.self
    assert attention.num_attention_heads == 2 and attention.attention_head_size == 8  # head width kept
    assert attention.query.out_features == attention.key.out_features == attention.value.out_features == 16
    assert pruned.encoder.layer[0].intermediate.dense.out_features == 32  # FFN neurons halved
    assert pruned.config.hidden_size == 32 and pruned.embeddings.word_embeddings.embedding_dim == 32  # residual width kept
    notes = artifact.notes["structured_prune"]
    assert notes["heads"]["encoder.layer.0.attention.self"] == [4, 2]
    outputs = runner(*named.values())
    assert [o.shape for o in outputs] == [e.shape for e in expected.values()]


def test_a_last_layer_returned_as_it_is_keeps_its_outputs():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    _, artifact, _, _ = build(_recipe(ratio=0.5, recovery="none"), model, torch.randn(2, 8))
    pruned = artifact.module.module
    assert pruned[0].out_features == 8 and pruned[2].in_features == 8 and pruned[2].out_features == 4


def test_a_model_whose_every_group_feeds_an_output_is_unsupported_with_the_reason():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4)).eval()  # its only layer's outputs are the answer
    with pytest.raises(Unsupported, match="nothing to prune"):
        build(_recipe(ratio=0.5, recovery="none"), model, torch.randn(2, 8))


def test_distillation_recovery_brings_the_pruned_model_closer_to_fp32():
    torch.manual_seed(0)
    model = WideMLP().eval()
    calibration = (torch.randn(256, 16),)
    held_out = torch.randn(128, 16)
    with torch.no_grad():
        want = model(held_out)

    def error(recovery: str) -> tuple[float, dict]:
        recipe = _recipe(ratio=0.5, recovery=recovery, recovery_steps=300, lr=3e-3, batch_size=32)
        runner, artifact, _, _ = build(recipe, model, torch.randn(4, 16), calibration=calibration)
        (got,) = runner(held_out)
        return float(torch.nn.functional.mse_loss(got, want)), artifact.notes["structured_prune"]["recovery"]

    raw, _ = error("none")
    recovered, notes = error("auto")
    assert notes["method"] == "distillation from the fp32 model" and notes["steps"] == 300
    assert notes["final_loss"] < notes["initial_loss"]
    assert recovered < 0.5 * raw, (raw, recovered)  # judged on inputs it was not distilled on


@pytest.mark.parametrize("criterion", ["l2", "taylor", "random"])
def test_every_criterion_prunes(criterion):
    torch.manual_seed(0)
    runner, artifact, _, _ = build(_recipe(ratio=0.5, criterion=criterion, recovery="none"), PrunableCNN().eval(),
                                   torch.randn(4, 3, 8, 8), calibration=(torch.randn(16, 3, 8, 8),))
    notes = artifact.notes["structured_prune"]
    assert notes["flops_after"] < notes["flops_before"] and notes["criterion"] == criterion
    if criterion == "taylor":
        assert notes["taylor_gradients_from"] == "the outputs' energy on calibration inputs"


def test_l1_and_random_choose_different_channels():
    torch.manual_seed(0)
    model, x = PrunableCNN().eval(), torch.randn(4, 3, 8, 8)
    kept = {}
    for criterion in ("l1", "random"):
        _, artifact, _, _ = build(_recipe(ratio=0.5, criterion=criterion, recovery="none"), model, x)
        kept[criterion] = artifact.module.module.conv1.weight.detach().clone()
    # L1 keeps the largest filters: their summed magnitude beats a random half's.
    assert kept["l1"].abs().sum() > kept["random"].abs().sum()


def test_the_pruned_model_composes_with_two_runtimes_without_code_in_them():
    torch.manual_seed(0)
    model, x = PrunableCNN().eval(), torch.randn(4, 3, 8, 8)
    for stack in ("prune-l1-30-raw", "prune-l1-30-raw+onnxruntime"):
        recipe = parse(stack, None, None, "cpu")
        assert recipe.passes[0].name == "structured_prune"
        runner, artifact, named, expected = build(recipe, model, x)
        (got,) = runner(*named.values())
        assert got.shape == expected["output"].shape
        assert artifact.approximate  # carried through the ONNX export
        assert artifact.notes["structured_prune"]["flops_after"] < artifact.notes["structured_prune"]["flops_before"]


def test_pruning_is_planned_only_with_a_metric_to_judge_it():
    model, x = PrunableCNN().eval(), torch.randn(4, 3, 8, 8)
    assert StructuredPrune.variants(_workload(model, x), None, "cpu") == []
    eval_set = EvalSet({"x": torch.randn(8, 3, 8, 8)}, "top1_agreement")
    variants = StructuredPrune.variants(_workload(model, x, eval_set), None, "cpu")
    defaults = [v for v in variants if v.alone]
    assert [v.tag for v in defaults] == ["prune-l1-30"] and variants[0].tag == "prune-l1-30"
    assert {v.tag for v in variants} >= {"prune-l2-50", "prune-taylor-10", "prune-random-30-raw"}  # on request
    assert not any(v.stack for v in variants)


def test_an_approximated_model_is_judged_by_the_metric():
    check = OutputCheck("out", 0.5, 0.5, 0.9, 1e-5, 1.3e-6, 0, False)  # far beyond the fp32 tolerance
    metric = MetricCheck("top1", 0.97, 0.98, 0.02, True)
    assert not verdict_of((check,), metric, "float32").passed
    passed = verdict_of((check,), metric, "float32", approximate=True)
    assert passed.passed and "advisory for an approximated model" in passed.reason
    assert not verdict_of((check,), None, "float32", approximate=True).passed  # no metric: the tolerance decides


def _missed(recipe: Recipe, drop: float, budget: float = 0.01) -> CandidateResult:
    check = OutputCheck("out", 1.0, 1.0, 0.5, 0.1, 0.1, 0, False)
    metric = MetricCheck("top1", 0.9 - drop, 0.9, budget, drop <= budget)
    verdict = Verdict(drop <= budget, "x", "float32", (check,), metric, tensor_check_advisory=True)
    return CandidateResult(recipe, "bs4", Status.OK if drop <= budget else Status.WRONG_ANSWER, "x", verdict)


def test_a_missed_budget_backs_off_to_a_lower_ratio_until_it_passes():
    recipe = dataclasses.replace(parse("prune-l1-30", None, None, "cpu"), label="prune-l1-30")
    planned = back_offs(recipe, [_missed(recipe, 0.015)], FallbackSettings())
    first = next(planned)
    assert first.label == "prune-l1-15" and first.passes[0].config.ratio == 0.15
    assert "pruning ratio lowered from 0.3 to 0.15" in first.origin
    second = planned.send([_missed(first, 0.012)])  # still missed: halve again
    assert second.label == "prune-l1-8" and second.passes[0].config.ratio == 0.075
    with pytest.raises(StopIteration):
        planned.send([_missed(second, 0.005)])  # passed: no more retries


def test_a_back_off_that_cannot_recover_is_not_planned_and_says_why():
    recipe = parse("prune-l1-30", None, None, "cpu")
    refused = []
    # A 0.2 drop against 0.01 allowed (20x): halving predicts 10x, a quarter 5x, an eighth 2.5x.
    retries = list(back_offs(recipe, [_missed(recipe, 0.2)], FallbackSettings(), on_refused=lambda *a: refused.append(a)))
    assert retries == []
    what, why = refused[0]
    assert what == "prune-l1-30 back-off retries" and "cannot recover the budget" in why and "20.0x" in why
    # A 3x miss: the first halving predicts 1.5x, within what the estimate is trusted to: planned.
    assert next(back_offs(recipe, [_missed(recipe, 0.03)], FallbackSettings())).passes[0].config.ratio == 0.15


@pytest.mark.slow
def test_a_ratio_that_breaks_accuracy_backs_off_in_the_sweep_and_the_retry_restores_it():
    import hone

    from plugins_for_tests import SlowEagerRuntime
    from tiny_models import HalfDeadMLP

    torch.manual_seed(1)
    model, samples = HalfDeadMLP().eval(), torch.randn(256, 16)
    eval_set = EvalSet({"x": samples}, "top1_agreement")
    too_far = Recipe("prune-l1-80-raw", (Step("structured_prune", StructuredPruneConfig(ratio=0.8, recovery="none")),),
                     Step("eager", _default_config("eager")))
    # A slow baseline: a retry is planned only where it can beat the best so far.
    result = hone.optimize(model, samples[:8], eval=eval_set, recipes=[SlowEagerRuntime.recipe(), too_far],
                           accuracy_budget=0.05, store=False, progress=False, profile_first=False, measure_time_s=0.5)
    by_label = {r.recipe.label: r for r in result.results}
    first = by_label["prune-l1-80-raw"]
    assert first.status is Status.WRONG_ANSWER and first.screen_p50_s is not None  # timed for the back-off
    # It missed by ~8x (agreement ~0.6 against 0.05 allowed): halving (4x) and quartering (2x)
    # are predicted not to recover it and are skipped; an eighth (1x) is planned and runs.
    assert [r.recipe.label for r in result.results if r.recipe.label.startswith("prune")] == ["prune-l1-80-raw", "prune-l1-10-raw"]
    retried = by_label["prune-l1-10-raw"]
    assert retried.ok and retried.verdict.metric.value >= 0.95
    assert retried.recipe.passes[0].config.ratio == 0.1
    assert "pruning ratio lowered from 0.8 to 0.1" in retried.recipe.origin
    assert retried.runner_info["steps"]["structured_prune"]["flops_removed"] > 0
    assert result.selection.best.label == "prune-l1-10-raw"
    assert any(line.startswith("pruned ") and "parameters" in line for line in retried.summary)  # in the report
    assert "no recovery after pruning" in retried.summary
