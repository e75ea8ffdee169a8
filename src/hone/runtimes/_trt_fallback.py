"""What ran where in a TensorRT build, read from what the build produced (no TensorRT needed).

`partition_report`: torch-tensorrt's dynamo path splits the exported graph into submodules: the
ones it converted, `_run_on_acc_<n>`, hold a TensorRT engine (a `TorchTensorRTModule`); the ones
it could not (no converter, `torch_executed_ops`, or a run of convertible ops shorter than
`min_block_size`), `_run_on_gpu_<n>`, stay fx GraphModules that PyTorch runs. Counting both
and listing the aten ops inside the PyTorch ones says how much of the model really ran in
TensorRT and what to look at when it is little.

`layer_precisions`: TensorRT's engine inspector describes each layer of a built engine; with
detailed profiling verbosity, each input's "Format/Datatype" ("Row major linear FP16 format",
"Thirty-two wide channel vectorized row major Int8 format", "Float", ...). The first input's
type is the layer's arithmetic (an int8 convolution reads int8 and may write float), so
counting layers by it shows whether fp16 or int8 kernels really ran.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import torch

ENGINE_PREFIX = "_run_on_acc"  # torch-tensorrt's name for a converted (TensorRT) submodule
# Data plumbing between submodules (unpacking a submodule's tuple of outputs), not computation.
PLUMBING = frozenset({"_operator.getitem"})
# torch.export's input checks (`ExportedProgram.module()` inserts a `_guards_fn` submodule):
# PyTorch runs them, but they compute nothing of the model.
GUARDS = frozenset({"_guards_fn"})


def op_name(target: Any) -> str:
    """An fx call target as torch-tensorrt names it ("torch.ops.aten._softmax.default"): the
    form `torch_executed_ops` takes, so a reported op can be copied into the config."""
    from torch.fx.node import _get_qualified_name

    if isinstance(target, str):
        return target
    try:
        return _get_qualified_name(target)
    except Exception:  # noqa: BLE001 - a target fx cannot name is still worth listing
        return str(target)


def partition_report(gm: torch.fx.GraphModule) -> dict[str, Any]:
    """{"trt_subgraphs": n, "torch_subgraphs": m, "fallback_ops": {op: count}} for the graph
    module torch-tensorrt returned. A PyTorch subgraph holding only export's input guards is not
    counted. Ops left in the top graph (the global partitioner leaves unsupported nodes there
    instead of in a submodule) are listed as fallback ops too: PyTorch runs them."""
    trt_subgraphs = torch_subgraphs = 0
    fallback: Counter[str] = Counter()
    for node in gm.graph.nodes:
        if node.op == "call_module":
            name = str(node.target)
            if name.startswith(ENGINE_PREFIX):
                trt_subgraphs += 1
            elif name not in GUARDS:
                ops = _ops_in(gm.get_submodule(name))
                torch_subgraphs += bool(ops)
                fallback.update(ops)
        elif node.op == "call_function" and op_name(node.target) not in PLUMBING:
            fallback[op_name(node.target)] += 1
    return {
        "trt_subgraphs": trt_subgraphs,
        "torch_subgraphs": torch_subgraphs,
        "fallback_ops": dict(sorted(fallback.items(), key=lambda item: (-item[1], item[0]))),
    }


def _ops_in(module: torch.nn.Module) -> Counter[str]:
    """The ops a PyTorch-run submodule computes, nested GraphModules included."""
    ops: Counter[str] = Counter()
    graph = getattr(module, "graph", None)
    if graph is None:  # an opaque module: PyTorch runs it whole
        ops[type(module).__name__] += 1
        return ops
    for node in graph.nodes:
        if node.op == "call_function" and op_name(node.target) not in PLUMBING:
            ops[op_name(node.target)] += 1
        elif node.op == "call_module" and str(node.target) not in GUARDS:
            ops.update(_ops_in(module.get_submodule(str(node.target))))
    return ops


# Substrings of an inspector "Format/Datatype" -> precision, most specific first ("Float" last:
# it is also a word in other descriptions).
_DATATYPES = (
    ("fp8", "fp8"), ("float8", "fp8"), ("e4m3", "fp8"),
    ("uint8", "uint8"), ("int8", "int8"), ("int4", "int4"), ("fp4", "fp4"),
    ("bf16", "bf16"), ("bfloat16", "bf16"),
    ("fp16", "fp16"), ("half", "fp16"),
    ("int32", "int32"), ("int64", "int64"), ("bool", "bool"),
    ("fp32", "fp32"), ("float", "fp32"),
)


def datatype_precision(description: str) -> str:
    """"Row major linear FP16 format" -> "fp16"; "N/A due to dynamic shapes" -> "unknown"."""
    text = description.lower()
    for token, precision in _DATATYPES:
        if token in text:
            return precision
    return "unknown"


def layer_precisions(engine_information: str) -> dict[str, Any]:
    """From an engine inspector's JSON: {"engine_layers": n, "layers_by_precision": {p: n}}.
    With layer-names-only verbosity the layers are bare names: then only the count is known
    ("layers_by_precision" is absent rather than guessed)."""
    try:
        layers = json.loads(engine_information).get("Layers", [])
    except (ValueError, AttributeError):
        return {}
    by_precision: Counter[str] = Counter()
    detailed = False
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        detailed = True
        inputs = [t for t in layer.get("Inputs", []) if isinstance(t, dict)]
        if inputs:  # constants and weights-only layers have none: they compute nothing per call
            by_precision[datatype_precision(str(inputs[0].get("Format/Datatype", "")))] += 1
    report: dict[str, Any] = {"engine_layers": len(layers)}
    if detailed:
        report["layers_by_precision"] = dict(sorted(by_precision.items()))
    return report


def merge_layer_precisions(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum of several engines' `layer_precisions` (torch-tensorrt builds one per subgraph)."""
    total = Counter()
    layers = 0
    detailed = bool(reports) and all("layers_by_precision" in r for r in reports)
    for report in reports:
        layers += report.get("engine_layers", 0)
        total.update(report.get("layers_by_precision", {}))
    merged: dict[str, Any] = {"engine_layers": layers}
    if detailed:
        merged["layers_by_precision"] = dict(sorted(total.items()))
    return merged
