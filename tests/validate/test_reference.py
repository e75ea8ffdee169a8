"""The reference run: determinism, float64 calibration of fp32 tolerances, eval-set checks."""

from __future__ import annotations

import pytest
import torch

from hone.errors import InputError
from hone.models.workload import EvalSet, InputSet, Workload
from hone.validate.compare import compare_output
from hone.validate.reference import FP64_ERROR_MULTIPLIER, compute_reference


def _deep_mlp(depth: int = 24, width: int = 256) -> torch.nn.Sequential:
    torch.manual_seed(0)
    layers = []
    for _ in range(depth):
        linear = torch.nn.Linear(width, width)
        torch.nn.init.normal_(linear.weight, std=1.8 / width**0.5)  # activations grow to ~1e3
        layers += [linear, torch.nn.ReLU()]
    return torch.nn.Sequential(*layers).eval()


def _normalised(net: torch.nn.Sequential, x: torch.Tensor) -> torch.nn.Sequential:
    """net followed by an eval-mode BatchNorm whose running statistics shrink large activations to
    small outputs (as in a ResNet): errors come from the large values, the scale from the small."""
    with torch.no_grad():
        h = net(x)
    bn = torch.nn.BatchNorm1d(h.shape[1]).eval()
    bn.running_mean.copy_(h.mean(0))
    bn.running_var.copy_(h.var(0) * 1e-4 + 1e-3)
    return torch.nn.Sequential(net, bn).eval()


def _permuted_copy(net: torch.nn.Sequential) -> torch.nn.Sequential:
    """The same function with hidden units reordered: identical in exact arithmetic, a different
    fp32 summation order in practice (what fusion or another kernel does to a program)."""
    import copy

    out = copy.deepcopy(net)
    linears = [m for m in out if isinstance(m, torch.nn.Linear)]
    g = torch.Generator().manual_seed(1)
    for a, b in zip(linears, linears[1:]):
        perm = torch.randperm(a.out_features, generator=g)
        a.weight.data, a.bias.data = a.weight.data[perm], a.bias.data[perm]
        b.weight.data = b.weight.data[:, perm]
    return out


class _Wrap(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


def test_reordered_fp32_arithmetic_passes_and_real_bugs_still_fail():
    x = torch.randn(64, 256, generator=torch.Generator().manual_seed(2))
    net = _deep_mlp()
    model = _normalised(net, x)
    reference = compute_reference(Workload("deep", _Wrap(model), [InputSet("bs64", {"x": x})]))
    expected = reference.outputs["bs64"][0]
    error64 = reference.fp32_error["bs64"][0]
    widen = reference.extra_atol["bs64"][0]
    assert error64 > 0 and widen == pytest.approx(FP64_ERROR_MULTIPLIER * error64)

    reordered_model = torch.nn.Sequential(_permuted_copy(net), model[1]).eval()
    with torch.inference_mode():
        reordered = reordered_model(x)
    assert not torch.equal(reordered, expected)  # the reordering really changed the bits
    assert not compare_output("out", reordered, expected, "float32").passed  # the op-level floor rejects it
    assert compare_output("out", reordered, expected, "float32", widen).passed

    bug = expected.roll(1, dims=1)  # right values, wrong places
    assert not compare_output("out", bug, expected, "float32", widen).passed
    off_by_a_bit = expected * 1.001  # a 0.1 % systematic error is far beyond fp32 rounding
    assert not compare_output("out", off_by_a_bit, expected, "float32", widen).passed


def test_run_to_run_difference_marks_non_determinism():
    class Noisy(torch.nn.Module):
        def forward(self, x):
            return x + 1e-4 * torch.rand_like(x)

    reference = compute_reference(Workload("n", Noisy(), [InputSet("bs2", {"x": torch.ones(2, 3)})]))
    assert reference.nondeterministic and reference.extra_atol["bs2"][0] > 0


def test_eval_set_that_does_not_match_the_inputs_is_an_input_error():
    model = _Wrap(torch.nn.Linear(4, 2))
    workload = Workload("m", model, [InputSet("bs2", {"x": torch.randn(2, 4)})])
    workload.eval = EvalSet({"x": torch.randn(10, 5)}, metric="top1", labels=torch.zeros(10, dtype=torch.long))
    with pytest.raises(InputError, match=r"input 'x' has shape \[10, 5\], the model's example input is \[2, 4\]"):
        compute_reference(workload)
    workload.eval = EvalSet({"x": torch.randn(10, 4)}, metric="top1", labels=torch.zeros(7, dtype=torch.long))
    with pytest.raises(InputError, match="10 samples but 7 labels"):
        compute_reference(workload)
