"""Unstructured and 2:4 sparsity: the zeros are real and counted, unstructured zeros give dense
kernels nothing to skip (measured in benchmarks, not here), and 2:4 never runs without sparse
tensor cores."""

from __future__ import annotations

import torch

from hone.passes.torch.semi_structured_sparsity import SemiStructuredSparsity, two_of_four_mask
from hone.search.compose import parse
from harness import build, this_cpu
from tiny_models import PrunableCNN


def test_magnitude_sparsity_zeroes_the_smallest_weights_and_counts_them():
    torch.manual_seed(0)
    model, x = PrunableCNN().eval(), torch.randn(4, 3, 8, 8)
    runner, artifact, named, expected = build(parse("sparse-80", None, None, "cpu"), model, x)
    notes = artifact.notes["magnitude_sparsity"]
    assert 0.79 <= notes["zeroed_share"] <= 0.81
    conv = artifact.module.module.conv1
    survivors = conv.weight[conv.weight != 0].abs()
    assert survivors.min() >= model.conv1.weight.abs().flatten().kthvalue(int(0.8 * conv.weight.numel())).values
    assert artifact.approximate and conv.weight.shape == model.conv1.weight.shape  # same dense FLOPs
    assert runner(*named.values())[0].shape == expected["output"].shape
    assert (model.conv1.weight != 0).all()  # the user's model is untouched


def test_two_of_four_keeps_the_two_largest_of_every_four():
    torch.manual_seed(0)
    weight = torch.randn(8, 16)
    mask = two_of_four_mask(weight)
    groups, kept = weight.abs().reshape(8, 4, 4), mask.reshape(8, 4, 4)
    assert (kept.sum(-1) == 2).all()
    assert (groups[kept].reshape(8, 4, 2).min(-1).values >= groups[~kept].reshape(8, 4, 2).max(-1).values).all()


def test_two_of_four_is_unsupported_on_a_cpu_with_the_capability_reason():
    reason = SemiStructuredSparsity.available(this_cpu(), "cpu")
    assert reason == ("2:4 semi-structured sparsity needs a CUDA GPU with compute capability 8.0 or higher "
                      "(sparse tensor cores); this run is on cpu")
