"""Which ONNX nodes are which torch layers, so ONNX Runtime quantization speaks in layers.

The dynamo exporter records on every node the module scopes it came from
(metadata "pkg.torch.onnx.name_scopes": module paths outermost first, then the fx node's own
name). A node is a layer's node when it is a
MatMul/Gemm/Conv whose innermost scope is a module with a constant weight: Linear and Conv
layers. Matmuls between two activations (attention scores) belong to no layer, and stay float:
their ranges vary per input and quantizing them per tensor costs most of the accuracy.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from hone.passes.quantize import FLATIO_PREFIX, layers, match_folded_weights, require_layers

WEIGHT_OPS = ("MatMul", "Gemm", "Conv")
SCOPES_KEY = "pkg.torch.onnx.name_scopes"


def layer_nodes(path: Path, module: Any = None) -> dict[str, str]:
    """Node name -> layer name (as in the user's model) for every weight-bearing node; with the
    torch `module`, folded nodes are found by weight value."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    known = set(layers(module)) if module is not None else None
    found: dict[str, str] = {}
    scoped: dict[str, str] = {}  # node -> its scope, where that is no layer of the module
    unnamed: dict[str, str] = {}  # node -> the initializer holding its weight
    by_name = {n.name: n for n in graph.node}
    for name, weight in weight_nodes(graph).items():
        scope = _innermost_scope(by_name[name]).removeprefix(FLATIO_PREFIX)
        if scope and (known is None or scope in known):
            found[name] = scope
        elif known is not None:
            unnamed[name] = weight
            if scope:
                scoped[name] = scope
    if unnamed:
        found.update(match_folded_weights(_initializers(path, set(unnamed.values()), unnamed), module))
        # Not matched by value: still quantized under its scope, as without the module.
        found.update({node: scope for node, scope in scoped.items() if node not in found})
    gemms = {n.name for n in graph.node if n.op_type == "Gemm"}
    for name in [n for n in found if n in gemms]:
        found[f"{name}_MatMul"] = found[name]  # the dynamic quantizer rewrites Gemm as "<name>_MatMul" + Add
    return found


def weight_nodes(graph: Any) -> dict[str, str]:
    """Node name -> the constant holding its weight, for every MatMul/Gemm/Conv whose second
    input is a constant (reached directly or through a Transpose, Cast or Identity of one)."""
    constants = {t.name for t in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    source = {
        o: n.input[0] for n in graph.node if n.op_type in ("Transpose", "Cast", "Identity") and n.input
        and n.input[0] in constants for o in n.output
    }
    constants |= set(source)
    return {
        node.name: source.get(node.input[1], node.input[1]) for node in graph.node
        if node.op_type in WEIGHT_OPS and len(node.input) >= 2 and node.input[1] in constants
    }


def follow_nodes(names: list[str], before: Path, after: Path) -> list[str]:
    """The nodes of `after` (a rewrite of `before`, such as ONNX Runtime's pre-processing) that
    compute what `names` computed in `before`. Fusions rename what they fuse (a MatMul and its
    bias Add become one Gemm "<matmul>/MatMulAddFusion" when shapes are static), so a node is
    followed by the weight it multiplies, and by its name where no weight identifies it."""
    import onnx

    old = weight_nodes(onnx.load(str(before), load_external_data=False).graph)
    graph = onnx.load(str(after), load_external_data=False).graph
    by_weight: dict[str, list[str]] = {}
    for node, weight in weight_nodes(graph).items():
        by_weight.setdefault(weight, []).append(node)
    present = [n.name for n in graph.node]
    followed: list[str] = []
    for name in names:
        same = by_weight.get(old.get(name, ""), []) or [n for n in present if n == name or n.startswith(f"{name}/")]
        for node in same:
            if node not in followed:
                followed.append(node)
    return followed


def int8_weight_nodes(path: Path) -> set[str]:
    """The weight nodes of a QDQ graph that really take int8: both inputs come from a
    DequantizeLinear (quantize_static leaves a node float, silently, where it cannot quantize it)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in graph.node
            if n.op_type in WEIGHT_OPS and len(n.input) >= 2 and all(i in dequantized for i in n.input[:2])}


def _initializers(path: Path, wanted: set[str], nodes: dict[str, str]) -> dict[str, Any]:
    """Node -> the array of its weight initializer (external data loaded: values are needed)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.name in wanted}
    return {node: arrays[init] for node, init in nodes.items() if init in arrays}


def select_nodes(path: Path, keep_float: tuple[str, ...], module: Any = None) -> tuple[list[str], list[str]]:
    """(nodes to quantize, nodes kept float) for `keep_float`; a name that is no layer of the
    graph is an InputError before any quantization. The layers' names matter only for
    keep_float: without it, no weights are loaded to match folded nodes by value."""
    nodes = layer_nodes(path, module if keep_float else None)
    if not nodes:
        return [], []  # no scope metadata (an ONNX file not from hone's export): quantizer's default
    require_layers(keep_float, sorted(set(nodes.values())), "Linear/Conv")
    kept = set(keep_float)
    quantize = [name for name, layer in nodes.items() if layer not in kept]
    keep = [name for name, layer in nodes.items() if layer in kept]
    return quantize, keep


def _innermost_scope(node) -> str:
    for prop in node.metadata_props:
        if prop.key == SCOPES_KEY:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return ""
            return scopes[-2] if len(scopes) >= 2 else ""  # the last entry is the fx node name
    return ""
