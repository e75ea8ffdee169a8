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
    constants = {t.name for t in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    # A weight may reach its MatMul through a Transpose or Cast of a constant.
    source = {
        o: n.input[0] for n in graph.node if n.op_type in ("Transpose", "Cast", "Identity") and n.input
        and n.input[0] in constants for o in n.output
    }
    constants |= set(source)
    known = set(layers(module)) if module is not None else None
    found: dict[str, str] = {}
    scoped: dict[str, str] = {}  # node -> its scope, where that is no layer of the module
    unnamed: dict[str, str] = {}  # node -> the initializer holding its weight
    for node in graph.node:
        if node.op_type not in WEIGHT_OPS or len(node.input) < 2 or node.input[1] not in constants:
            continue
        scope = _innermost_scope(node).removeprefix(FLATIO_PREFIX)
        if scope and (known is None or scope in known):
            found[node.name] = scope
        elif known is not None:
            unnamed[node.name] = source.get(node.input[1], node.input[1])
            if scope:
                scoped[node.name] = scope
    if unnamed:
        found.update(match_folded_weights(_initializers(path, set(unnamed.values()), unnamed), module))
        # Not matched by value: still quantized under its scope, as without the module.
        found.update({node: scope for node, scope in scoped.items() if node not in found})
    gemms = {n.name for n in graph.node if n.op_type == "Gemm"}
    for name in [n for n in found if n in gemms]:
        found[f"{name}_MatMul"] = found[name]  # the dynamic quantizer rewrites Gemm as "<name>_MatMul" + Add
    return found


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
