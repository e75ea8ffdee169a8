"""What the attention passes (sdpa_rewrite, hf_attention) share: finding transformers models in
a module tree without importing transformers, a cheap static guess at whether a module could
hold hand-written attention, and reading back which SDPA kernel ran."""

from __future__ import annotations

import inspect
import sys
import types
from collections import Counter
from typing import Any

import torch

# The aten op each SDPA backend runs as (torch 2.13). `scaled_dot_product_attention` picks one
# at run time from the shapes, dtype, mask and device, so only the profiler can say which ran.
# The outer `_scaled_dot_product_*` ops are counted; the inner `_flash/_efficient_attention_forward`
# ones only where no outer op was seen (a caller that reached them directly).
BACKEND_OPS = {
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (CPU)",
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_efficient_attention": "memory-efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_fused_attention_overrideable": "fused (overrideable)",
    "aten::_scaled_dot_product_attention_math": "math",
}
INNER_BACKEND_OPS = {
    "aten::_flash_attention_forward": "flash",
    "aten::_efficient_attention_forward": "memory-efficient",
}


def pretrained_models(module: torch.nn.Module) -> list[Any]:
    """The outermost transformers PreTrainedModels in `module`'s tree (a ForMaskedLM's inner
    BertModel is reached through its parent). Empty when transformers was never imported: then
    no PreTrainedModel can exist, and this imports nothing."""
    utils = sys.modules.get("transformers.modeling_utils")
    if utils is None:
        return []
    found = [m for m in module.modules() if isinstance(m, utils.PreTrainedModel)]
    inner = {id(child) for m in found for child in m.modules() if child is not m}
    return [m for m in found if id(m) not in inner]


def attn_implementation(model: Any) -> str:
    return str(getattr(model.config, "_attn_implementation", None) or "eager")


def could_hold_hand_written_attention(module: torch.nn.Module) -> bool:
    """A cheap static guess, to keep the SDPA rewrite out of plans it cannot serve (the
    rewrite itself decides exactly, on the exported graph). True when a transformers model in
    the tree runs its eager attention (hand-written: matmul, softmax, matmul), or a module
    outside transformers uses softmax in its forward (or in a function that forward calls), or
    is an nn.Softmax, or is an exported graph with a softmax node. A transformers model on SDPA
    or flash attention has nothing to rewrite, whatever its eager code path says."""
    if any(attn_implementation(m) == "eager" for m in pretrained_models(module)):
        return True
    for sub in module.modules():
        cls = type(sub)
        if cls.__module__.split(".")[0] == "transformers":
            continue  # judged by its config above
        if isinstance(sub, torch.nn.Softmax):
            return True
        if isinstance(sub, torch.fx.GraphModule):
            if any(n.op == "call_function" and _is_softmax_target(n.target) for n in sub.graph.nodes):
                return True
            continue
        if cls.__module__.split(".")[0] == "torch":
            continue  # torch's own modules (Linear, LayerNorm, ...): nn.Softmax was checked
        if _forward_uses_softmax(cls):
            return True
    return False


def _is_softmax_target(target: Any) -> bool:
    name = getattr(target, "__name__", str(target))
    return name.split(".")[0] in ("softmax", "_softmax", "_safe_softmax")


_CHECKED: dict[type, bool] = {}


def _forward_uses_softmax(cls: type) -> bool:
    """Whether `cls.forward`'s bytecode names softmax (`F.softmax`, `x.softmax`,
    `torch.softmax` all put "softmax" in co_names; log_softmax does not), or a module-level
    function of its own package it calls does. Reads no source file: bytecode only."""
    if cls not in _CHECKED:
        forward = inspect.unwrap(getattr(cls, "forward", None) or (lambda: None))
        _CHECKED[cls] = _code_uses_softmax(getattr(forward, "__code__", None), getattr(forward, "__globals__", {}), depth=2)
    return _CHECKED[cls]


def _code_uses_softmax(code: types.CodeType | None, scope: dict[str, Any], depth: int) -> bool:
    if code is None:
        return False
    if "softmax" in code.co_names:
        return True
    nested = [c for c in code.co_consts if isinstance(c, types.CodeType)]  # closures, comprehensions
    if any(_code_uses_softmax(c, scope, depth) for c in nested):
        return True
    if depth == 0:
        return False
    for name in code.co_names:  # helpers it calls: `attention(q, k, v)` defined beside the model
        helper = scope.get(name)
        if inspect.isfunction(helper) and helper.__module__.split(".")[0] not in ("torch", "builtins"):
            if _code_uses_softmax(helper.__code__, helper.__globals__, depth - 1):
                return True
    return False


def sdpa_backends(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], device: str = "cpu") -> dict[str, int]:
    """Backend -> number of SDPA calls in one forward of `module` on `inputs`, read from the
    profiler's op names. One profiled forward: cheap next to any build."""
    from torch.profiler import ProfilerActivity, profile

    inputs = tuple(t.to(device) for t in inputs)
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        module(*inputs)
    names = Counter()
    for event in prof.key_averages():
        names[event.key] += event.count
    outer = {BACKEND_OPS[n]: c for n, c in names.items() if n in BACKEND_OPS}
    return outer or {INNER_BACKEND_OPS[n]: c for n, c in names.items() if n in INNER_BACKEND_OPS}


def backend_notes(backends: dict[str, int]) -> dict[str, Any]:
    """The notes' form: one line naming the backends that ran, and their call counts."""
    if not backends:
        return {"sdpa_backend": "none (no scaled_dot_product_attention ran)", "sdpa_calls": {}}
    return {"sdpa_backend": ", ".join(sorted(backends)), "sdpa_calls": dict(sorted(backends.items()))}
