"""assert_recipe_preserves_outputs: build a recipe in-process and compare with eager fp32.

Keeps each pass's and runtime's test a few lines: adding a backend means one small test file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from hone.models.workload import FlatIO, name_inputs, normalize_outputs
from hone.plugin import BuildContext
from hone.runtimes.base import Runner
from hone.search.build import build_recipe
from hone.search.recipe import Recipe
from hone.validate.compare import compare_output


def build(recipe: Recipe, model: torch.nn.Module, example_inputs, threads: int = 1, calibration=None, train=None):
    """`calibration`: samples (one tensor per input, stacked on dim 0) for quantization passes;
    `train`: a TrainSet for quantization-aware training."""
    named = name_inputs(model, example_inputs)
    with torch.inference_mode():
        expected = normalize_outputs(model(**named))
    ctx = BuildContext(
        tuple(named.values()), list(named), list(expected), Path(tempfile.mkdtemp(prefix="hone-test-")), threads,
        calibration=calibration, train=train,
    )
    runner, artifact, build_s = build_recipe(recipe, FlatIO(model, list(named), list(expected)), ctx)
    return runner, artifact, named, expected


def assert_recipe_preserves_outputs(recipe: Recipe, model: torch.nn.Module, example_inputs) -> Runner:
    runner, artifact, named, expected = build(recipe, model.eval(), example_inputs)
    outputs = runner(*named.values())
    assert len(outputs) == len(expected)
    for (name, want), got in zip(expected.items(), outputs):
        check = compare_output(name, got, want, runner.compute_dtype or artifact.compute_dtype)
        assert check.passed, f"{recipe.label}: {name}: max abs err {check.max_abs_err} (atol {check.atol})"
    return runner


def layer_quantization(graph_module: torch.nn.Module) -> dict[str, tuple[bool, bool]]:
    """Layer (named as in the user's model) -> (input dequantized, weight dequantized) for each
    linear/conv of a converted PT2E graph: (True, True) is an int8 layer, (False, False) a float one."""
    ops = (torch.ops.aten.linear.default, torch.ops.aten.conv2d.default)
    found = {}
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and node.target in ops:
            layer = list(node.meta["nn_module_stack"].values())[-1][0].removeprefix("module.")
            found[layer] = tuple("dequantize" in str(getattr(a, "target", "")) for a in node.args[:2])
    return found


def this_cpu():
    """This machine as hone probes it (no peaks measured): what proposals are made for here."""
    from hone.hardware import probe

    return probe(measure_peaks=False)
