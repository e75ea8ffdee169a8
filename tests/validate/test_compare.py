import math

import torch

from hone.validate.check import check_metric, check_tensors, verdict_of
from hone.models.workload import EvalSet
from hone.validate.compare import compare_output, tolerance
from hone.validate.verdict import AccuracyBudget


def test_fp32_floor_is_assert_close_default():
    assert tolerance("float32") == (1.3e-6, 1e-5)
    assert tolerance("bfloat16")[0] == 1.6e-2


def test_identical_outputs_pass_and_report_zero_error():
    x = torch.randn(4, 8)
    c = compare_output("out", x.clone(), x, "float32")
    assert c.passed and c.max_abs_err == 0 and math.isclose(c.cosine, 1.0)


def test_fp32_rejects_an_error_a_bf16_candidate_may_have():
    ref = torch.randn(64, 64)
    noisy = ref + 3e-3 * ref.abs().max() * torch.randn_like(ref).clamp(-1, 1)
    assert not compare_output("out", noisy, ref, "float32").passed
    assert compare_output("out", noisy, ref, "bfloat16").passed


def test_bf16_still_rejects_an_error_of_the_outputs_own_magnitude():
    ref = torch.randn(64, 64)
    broken = ref.roll(1, dims=1)  # a layout bug: right values, wrong places
    assert not compare_output("out", broken, ref, "bfloat16").passed


def test_nan_fails_even_when_reference_has_none():
    ref = torch.ones(3)
    c = compare_output("out", torch.tensor([1.0, float("nan"), 1.0]), ref, "bfloat16")
    assert not c.passed and c.nonfinite == 1


def test_shape_mismatch_fails():
    assert not compare_output("out", torch.ones(2, 3), torch.ones(3, 2), "float32").passed


def test_integer_outputs_compare_exactly():
    ref = torch.tensor([1, 2, 3])
    assert compare_output("ids", ref.clone(), ref, "bfloat16").passed
    assert not compare_output("ids", torch.tensor([1, 2, 4]), ref, "bfloat16").passed


def test_reference_nondeterminism_widens_the_tolerance():
    ref = torch.zeros(4)
    off = torch.full((4,), 5e-5)
    assert not compare_output("o", off, ref, "float32").passed
    assert compare_output("o", off, ref, "float32", extra_atol=1e-4).passed


def _eval_set(labels):
    return EvalSet({"x": torch.zeros(len(labels), 1)}, metric="top1", labels=torch.tensor(labels))


def test_metric_budget_decides_and_is_reported():
    ev = _eval_set([0, 1, 1, 0])
    logits = torch.tensor([[1.0, 0], [0, 1], [0, 1], [0, 1]])  # 3 of 4 right
    m = check_metric({"logits": logits}, {"logits": logits}, ev, reference_score=1.0, budget=AccuracyBudget(0.01))
    assert m.value == 0.75 and not m.passed and math.isclose(m.delta, -0.25)
    ok = check_metric({"logits": logits}, {"logits": logits}, ev, reference_score=0.75, budget=AccuracyBudget(0.01))
    assert ok.passed


def test_relative_budget_is_a_share_of_the_fp32_score():
    ev = _eval_set([0, 1, 1, 0])
    logits = torch.tensor([[1.0, 0], [0, 1], [0, 1], [0, 1]])  # 0.75
    # 0.75 against 0.80: a drop of 0.05, i.e. 6.25 % of fp32's score.
    loose = check_metric({"o": logits}, {}, ev, reference_score=0.80, budget=AccuracyBudget.parse("7%"))
    tight = check_metric({"o": logits}, {}, ev, reference_score=0.80, budget=AccuracyBudget.parse("6%"))
    assert loose.passed and not tight.passed
    assert math.isclose(tight.budget, 0.048) and tight.budget_text == "6% of fp32"
    verdict = verdict_of(check_tensors((logits,), (logits,), ["o"], "int8"), tight, "int8")
    assert not verdict.passed and "6% of fp32" in verdict.reason


def test_budget_parse_rejects_nonsense():
    import pytest

    from hone.errors import InputError

    assert AccuracyBudget.parse(0.02) == AccuracyBudget(0.02)
    assert AccuracyBudget.parse("0.5%") == AccuracyBudget(0.005, relative=True)
    for bad in ("abc", "-0.1", "150%"):
        with pytest.raises(InputError):
            AccuracyBudget.parse(bad)


def test_verdict_fails_on_metric_even_when_tensors_pass():
    x = torch.randn(2, 2)
    checks = check_tensors((x,), (x,), ["out"], "float32")
    ev = _eval_set([0, 1])
    bad = check_metric({"o": torch.tensor([[0.0, 1], [1, 0]])}, {}, ev, reference_score=1.0, budget=AccuracyBudget(0.01))
    verdict = verdict_of(checks, bad, "float32")
    assert not verdict.passed and "top1" in verdict.reason


def test_quantized_candidates_have_advisory_tensor_checks():
    ref = torch.randn(8, 8)
    checks = check_tensors((ref + 0.05,), (ref,), ["out"], "int8")
    ev = _eval_set([0])
    good = check_metric({"o": torch.tensor([[1.0, 0]])}, {}, ev, reference_score=1.0, budget=AccuracyBudget(0.01))
    verdict = verdict_of(checks, good, "int8")
    assert verdict.passed and verdict.tensor_check_advisory
    assert not verdict_of(checks, None, "int8").passed  # no metric: the tensor check decides


def test_output_count_mismatch_fails():
    x = torch.ones(2)
    checks = check_tensors((x,), (x, x), ["a", "b"], "float32")
    assert not verdict_of(checks, None, "float32").passed
