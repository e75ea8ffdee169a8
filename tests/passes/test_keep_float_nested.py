"""keep_float reaches layers nested in Sequential / ModuleList, convolutions and linears alike,
in every backend the accuracy fallback retries: a conv followed by a BatchNorm (which OpenVINO's
frontend and the ONNX exporter fold into it, renaming it) and a linear in a ModuleList stay in
float; their neighbours are quantized."""

from __future__ import annotations

import pytest
import torch

from hone._optional import is_available
from hone.registry import PASSES
from harness import build, layer_quantization, this_cpu

KEPT_CONV, KEPT_LINEAR = "cnn.0", "blocks.1"


class Nested(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.cnn = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
        )
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(16, 16) for _ in range(3)])
        self.head = torch.nn.Linear(16, 4)
        with torch.no_grad():  # a BatchNorm that really rescales: its fold changes the conv's weights
            self.cnn[1].weight.uniform_(0.5, 2.0)
            self.cnn[1].running_var.uniform_(0.5, 2.0)
            self.cnn[1].running_mean.uniform_(-0.5, 0.5)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        y = self.cnn(pixels).mean(dim=(2, 3))
        for block in self.blocks:
            y = torch.relu(block(y))
        return self.head(y)


def _recipe(label: str):
    from hone.models.workload import InputSet, Workload

    workload = Workload("nested", Nested().eval(), [InputSet("bs2", {"pixels": torch.randn(2, 3, 8, 8)})])
    for cls in PASSES:
        for recipe in cls.propose(workload, this_cpu(), "cpu"):
            if recipe.label == label:
                return recipe
    raise LookupError(label)


def _with_kept(label: str, kept: tuple[str, ...]):
    import dataclasses

    recipe = _recipe(label)
    quant = recipe.passes[-1]
    config = dataclasses.replace(quant.config, keep_float=kept)
    return dataclasses.replace(recipe, passes=(*recipe.passes[:-1], dataclasses.replace(quant, config=config)))


def _build(label: str, kept: tuple[str, ...]):
    torch.manual_seed(1)
    return build(_with_kept(label, kept), Nested().eval(), torch.randn(2, 3, 8, 8), calibration=(torch.randn(16, 3, 8, 8),))


def _apply(label: str, kept: tuple[str, ...]):
    """The recipe's passes alone, no runtime (what is kept is decided by the pass)."""
    import tempfile
    from pathlib import Path

    from hone.models.workload import FlatIO
    from hone.plugin import Artifact, BuildContext

    recipe = _with_kept(label, kept)
    torch.manual_seed(1)
    x = torch.randn(2, 3, 8, 8)
    ctx = BuildContext((x,), ["pixels"], ["output"], Path(tempfile.mkdtemp(prefix="hone-test-")), 1,
                       calibration=(torch.randn(16, 3, 8, 8),))
    artifact = Artifact("torch", FlatIO(Nested().eval(), ["pixels"], ["output"]).eval())
    for step in recipe.passes:
        artifact = PASSES.get(step.name)(step.config).apply(artifact, ctx)
    return artifact


def _notes(artifact, label: str) -> dict:
    """The quantization pass's own notes (each step files its notes under its name)."""
    return artifact.notes[_recipe(label).passes[-1].name]


def _onnx_weight_sources(path) -> dict[str, str]:
    """Weighted node -> "float" (its weight an initializer) or "int8" (through DequantizeLinear,
    or an integer op)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    produced_by = {o: n for n in graph.node for o in n.output}
    found = {}
    for node in graph.node:
        if node.op_type in ("ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul"):
            found[node.name] = "int8"
        elif node.op_type in ("Conv", "MatMul", "Gemm") and len(node.input) > 1:
            source = produced_by.get(node.input[1])
            while source is not None and source.op_type in ("Transpose", "Reshape"):
                source = produced_by.get(source.input[0])
            found[node.name] = "int8" if source is not None and source.op_type == "DequantizeLinear" else "float"
    return found


needs_ort = pytest.mark.skipif(not is_available("onnxruntime"), reason="requires onnxruntime (hone[onnx])")
needs_openvino = pytest.mark.skipif(not (is_available("openvino") and is_available("nncf")),
                                    reason="requires openvino and nncf (hone[openvino])")
needs_torchao = pytest.mark.skipif(not is_available("torchao"), reason="requires torchao")


@needs_ort
@pytest.mark.parametrize("label", ["ort-int8-dynamic", "ort-int8-static"])
def test_onnxruntime_keeps_the_folded_conv_and_the_listed_linear(label):
    _, artifact, _, _ = _build(label, (KEPT_CONV, KEPT_LINEAR))
    kept = _notes(artifact, label)["kept_float_nodes"]
    assert len(kept) >= 2, kept  # the folded conv and the linear (and its rewritten MatMul)
    sources = _onnx_weight_sources(artifact.path)
    assert all(sources.get(node, "float") == "float" for node in kept), sources
    assert "int8" in sources.values()  # the neighbours were quantized


@needs_openvino
@pytest.mark.parametrize("label", ["openvino-int8", "openvino-int8-weights"])
def test_openvino_keeps_the_folded_conv_and_the_listed_linear(label):
    from hone.passes.openvino.convert import layer_weight_precisions, read

    _, artifact, _, _ = _build(label, (KEPT_CONV, KEPT_LINEAR))
    precisions = layer_weight_precisions(read(artifact.path), artifact.module)
    assert precisions[KEPT_CONV] == "f32" and precisions[KEPT_LINEAR] == "f32", precisions
    assert precisions["cnn.3"] != "f32" and precisions["blocks.0"] != "f32", precisions
    assert _notes(artifact, label)["ignored_nodes"] == 2


@needs_torchao
def test_pt2e_keeps_the_conv_and_the_listed_linear():
    _, artifact, _, _ = _build("pt2e-int8", (KEPT_CONV, KEPT_LINEAR))
    layers = layer_quantization(artifact.module.graph_module)
    assert layers[KEPT_CONV] == (False, False) and layers[KEPT_LINEAR] == (False, False), layers
    assert layers["cnn.3"] == (True, True) and layers["blocks.0"] == (True, True), layers


def test_torch_dynamic_int8_keeps_the_listed_linear():
    _, artifact, _, _ = _build("torch-int8-dynamic", (KEPT_LINEAR,))
    inner = artifact.module.module
    assert type(inner.blocks[1]) is torch.nn.Linear
    assert type(inner.blocks[0]).__module__.startswith("torch.ao.nn.quantized.dynamic")


@needs_torchao
def test_torchao_weight_only_keeps_the_listed_linear():
    # The pass alone: Inductor 2.13 fails to lower this conv + Int8Tensor-linear graph (an
    # Inductor assertion, `crashed` in a sweep); keep_float is the pass's business.
    artifact = _apply("torchao-int8-weight-only", (KEPT_LINEAR,))
    inner = artifact.module.module
    assert type(inner.blocks[1].weight) is torch.nn.Parameter
    assert type(inner.blocks[0].weight).__name__ != "Parameter"
