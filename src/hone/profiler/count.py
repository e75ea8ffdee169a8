"""Count what each aten op of one forward does: FLOPs, bytes moved, dtype, shapes.

A TorchDispatchMode sees every op below autograd, in execution order. Composite ops (reshape,
layer_norm, scaled_dot_product_attention, ...) are decomposed here, as FlopCounterMode does,
so what we record are the ops that run kernels; the profiler shows the same ops, nested under
their composite parents, which is how hone.profiler.join lines the two up.

Bytes are the compulsory traffic, from shapes and dtypes: every distinct input tensor read
once, every output written once (weights are inputs). Real DRAM traffic can be lower (an
operand still in cache from the op before) or higher (a big GEMM re-reading tiles), but this
is the figure that makes intensities comparable across ops and batch sizes.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Any

import torch
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# Ops that only create a new view of existing memory, or allocate without touching it: they
# move no bytes, so counting their operands would invent traffic (a GPT-2 forward has more
# aten::view calls than any other op). Their time is dispatch overhead.
NO_TRAFFIC_OPS = frozenset(
    f"aten::{name}"
    for name in (
        "view", "_unsafe_view", "_reshape_alias", "reshape", "view_as", "expand", "expand_as", "t",
        "transpose", "permute", "slice", "select", "unsqueeze", "squeeze", "as_strided", "detach",
        "alias", "split", "split_with_sizes", "chunk", "unbind", "narrow", "diagonal", "unfold",
        "lift_fresh", "numpy_T", "_neg_view", "_conj", "view_as_real", "view_as_complex",
        "empty", "empty_like", "empty_strided", "resize_",
    )
)

# Gathers read only the rows they return from their table (the first tensor argument), not
# the table: an embedding lookup of 8 tokens touches 8 rows of a 45 MiB vocabulary.
GATHER_OPS = frozenset(f"aten::{name}" for name in ("embedding", "index_select", "gather", "index", "take"))

# Metadata queries that a dispatch mode may see but that are not ops of the model.
_METADATA = frozenset(
    {
        "aten::size", "aten::sym_size", "aten::stride", "aten::sym_stride", "aten::storage_offset",
        "aten::sym_storage_offset", "aten::numel", "aten::sym_numel", "aten::dim",
        "aten::is_contiguous", "aten::sym_is_contiguous", "aten::is_strides_like_format",
        "aten::is_non_overlapping_and_dense", "prim::layout", "prim::device",
    }
)


def _sdpa_cpu_flops(query, key, value, *args, **kwargs) -> int:
    # torch's registry covers the CUDA SDPA kernels only; the CPU flash kernel does the same
    # two batched matmuls (Q K^T and P V).
    return flop_counter.sdpa_flop_count(query.shape, key.shape, value.shape)


def _int_mm_flops(a, b, *args, **kwargs) -> int:
    return 2 * a.shape[0] * a.shape[1] * b.shape[1]


# FLOP formulas for kernels torch.utils.flop_counter does not know, by profiler-style name.
EXTRA_FLOPS = {
    "aten::_scaled_dot_product_flash_attention_for_cpu": _sdpa_cpu_flops,
    "aten::_scaled_dot_product_fused_attention_overrideable": _sdpa_cpu_flops,
    "aten::_int_mm": _int_mm_flops,
}


@dataclasses.dataclass(frozen=True)
class OpCall:
    """One aten op call as the counter saw it."""

    name: str  # "aten::addmm"
    flops: float
    bytes: float
    dtype: str  # of the first floating input, else the first input; "" without tensor inputs
    shapes: str  # input tensor shapes: "[2304], [1, 768], [768, 2304]"
    out_shape: tuple[int, ...] = ()  # the largest output tensor (for "largest activations")
    out_bytes: int = 0
    out_dtype: str = ""

    @property
    def intensity(self) -> float | None:
        return self.flops / self.bytes if self.bytes else None


def op_name(func: Any) -> str:
    """Profiler-style name: "aten::addmm" for torch.ops.aten.addmm.default."""
    schema = getattr(func, "_schema", None)
    if schema is not None:
        return schema.name
    return str(getattr(func, "__name__", func))


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def touched_bytes(t: torch.Tensor) -> int:
    """Bytes of the distinct elements a tensor covers: a broadcast (stride-0) dimension repeats
    the same memory, so an expanded bias counts once, not once per row."""
    if t.numel() == 0 or t.is_sparse or t.layout != torch.strided:
        return t.numel() * t.element_size()
    distinct = math.prod(size for size, stride in zip(t.shape, t.stride()) if stride != 0)
    return distinct * t.element_size()


def _key(t: torch.Tensor) -> tuple:
    # The same memory region seen twice in one call (an in-place op's output is its input) is
    # one read; different slices of one storage (q, k, v split from one tensor) are separate.
    try:
        return t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.dtype
    except (RuntimeError, NotImplementedError):  # no storage or no strides (mkldnn): identity
        return id(t), tuple(t.shape), t.dtype


def _tensors(tree: Any) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(tree)
    return [x for x in leaves if isinstance(x, torch.Tensor)]


def _shapes(tensors: list[torch.Tensor]) -> str:
    return ", ".join(f"[{', '.join(map(str, t.shape))}]" for t in tensors)


def _flops(name: str, func: Any, args: tuple, kwargs: dict, out: Any) -> float:
    formula = flop_counter.flop_registry.get(getattr(func, "_overloadpacket", None))
    try:
        if formula is not None:
            return float(formula(*args, **kwargs, out_val=out))
        if name in EXTRA_FLOPS:
            return float(EXTRA_FLOPS[name](*args, **kwargs))
    except Exception:  # an unusual overload (out=, symbolic shapes): no FLOPs beats a crash
        return 0.0
    return 0.0


def record_call(func: Any, args: tuple, kwargs: dict, out: Any) -> OpCall:
    """Describe one executed op call."""
    name = op_name(func)
    inputs = _tensors((args, kwargs))
    outputs = _tensors(out)
    moved = 0
    if name not in NO_TRAFFIC_OPS:
        seen: set[tuple] = set()
        for t in inputs + outputs:
            key = _key(t)
            if key not in seen:
                seen.add(key)
                moved += touched_bytes(t)
        if name in GATHER_OPS and inputs:
            table = touched_bytes(inputs[0])
            moved -= table - min(table, sum(touched_bytes(t) for t in outputs))
    main = next((t for t in inputs if t.is_floating_point()), inputs[0] if inputs else None)
    largest = max(outputs, key=lambda t: t.numel() * t.element_size(), default=None)
    return OpCall(
        name=name,
        flops=_flops(name, func, args, kwargs, out),
        bytes=float(moved),
        dtype=dtype_name(main.dtype) if main is not None else "",
        shapes=_shapes(inputs),
        out_shape=tuple(largest.shape) if largest is not None else (),
        out_bytes=largest.numel() * largest.element_size() if largest is not None else 0,
        out_dtype=dtype_name(largest.dtype) if largest is not None else "",
    )


_COMPOSITE = torch._C.DispatchKey.CompositeImplicitAutograd


def _is_composite(func: Any) -> bool:
    # The C++ composite kernel, as eager runs it; not func.decompose(), which prefers torch's
    # Python decompositions where they exist, and those differ (eval-mode dropout clones its
    # input there and returns it untouched in C++).
    return torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), _COMPOSITE)


class OpCounter(TorchDispatchMode):
    """`with OpCounter() as counter: model(*inputs)`, then `counter.calls` in execution order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[OpCall] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if op_name(func) in _METADATA:
            return func(*args, **kwargs)
        # Composite ops run their decomposition under this mode, so their parts are recorded.
        packet = getattr(func, "_overloadpacket", None)
        if packet is not None and packet not in flop_counter.flop_registry and _is_composite(func):
            with self:
                return func._op_dk(_COMPOSITE, *args, **kwargs)
        out = func(*args, **kwargs)
        self.calls.append(record_call(func, args, kwargs, out))
        return out


def count_ops(fn: Any, *args: torch.Tensor) -> list[OpCall]:
    """Run fn(*args) once under inference mode and return its op calls in execution order."""
    with torch.inference_mode(), OpCounter() as counter:
        fn(*args)
    return counter.calls


def call_indices(calls: list[OpCall]) -> list[int]:
    """For each call, how many calls of the same op came before it (0-based): the k that pairs
    it with the k-th profiler event of that name."""
    seen: Counter[str] = Counter()
    out = []
    for call in calls:
        out.append(seen[call.name])
        seen[call.name] += 1
    return out
