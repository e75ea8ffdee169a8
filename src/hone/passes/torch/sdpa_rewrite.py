"""sdpa_rewrite: hand-written attention in the exported graph becomes one
torch.nn.functional.scaled_dot_product_attention call, which on CPU runs the flash-attention
kernel (blocked over keys: the L x S scores are never held at once) and fuses the five ops.

Matched, in the ATen graph torch.export gives (export keeps `matmul`, `softmax`, `dropout`,
`masked_fill` as the user wrote them):

    q @ kT  [* c | / c]...  [+ mask | masked_fill(m, -inf) | where(m, s, -inf)]  softmax(-1)
            [dropout(train=False) | clone | contiguous | to(same dtype)]...  @ v

with `c` Python numbers (folded into SDPA's explicit `scale`; a scale pre-applied to q or k
stays where it is, as q or k is passed), kT any tensor (SDPA gets `kT.transpose(-2, -1)`, or
the tensor a transpose of the last two dims came from), q, kT, v batched matrices of one rank
with equal batch dimensions, and every intermediate used once (attention weights returned or
reused cannot be dropped: SDPA does not return them). Masks: an additive float mask of the
scores' dtype is passed as it is; SDPA's boolean mask means True = attend, so
`masked_fill(m, -inf)` (True = masked) passes `logical_not(m)` and `where(m, scores, -inf)`
passes `m`; the mask must broadcast to the scores. A scale after a boolean mask is exact
(-inf stays -inf), after an additive one it is not matched. Anything else (softmax over
another dim, a mask or any op after softmax, a scale by a tensor, a fill value other than
-inf, more than one mask) is left alone, with the reason in the notes.

Why a matcher of our own rather than torch's: Inductor's fuse_attention patterns
(torch/_inductor/fx_passes/fuse_attention.py) are private, traced from Inductor's joint-graph
IR with magic-number scalar workarounds, and enumerate one pattern per combination of scale
op, mask form, dropout, batch-1 clone and dtype; and its masked_fill pattern passes
`mask == 1` where the model masked `mask == 0`, which agrees only for 0/1 masks.
torch.fx's subgraph_rewriter is public but matches literals exactly (every scale constant and
view shape would need its own pattern) or, with ignore_literals, drops the scale. Walking back
from each softmax with the shapes torch.export recorded (node.meta["val"]) checks what makes
the rewrite exact: the softmax dim, the matrix shapes, the mask's broadcast and polarity.

Rank-3 attention (bmm over batch x heads) is given a leading dim of 1: SDPA's fused CPU
kernels take 4-D inputs only, and fall back to the math kernel (which holds the scores) on
3-D ones."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import TYPE_CHECKING, Any

import torch

from hone.config import NoConfig
from hone.errors import Unsupported
from hone.passes.base import Pass
from hone.passes.torch._attention import backend_notes, could_hold_hand_written_attention, sdpa_backends
from hone.plugin import Artifact, BuildContext, Claim, Variant

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

aten = torch.ops.aten
SDPA = aten.scaled_dot_product_attention.default
MATMULS = (aten.matmul.default, aten.bmm.default)
SOFTMAXES = (aten.softmax.int, aten._softmax.default)
SCALES = (aten.mul.Tensor, aten.mul.Scalar, aten.div.Tensor, aten.div.Scalar)
# Between softmax and @ v: ops that return their input's values unchanged in an eval graph.
SAME_VALUES = (aten.clone.default, aten.contiguous.default, aten.alias.default, aten.detach.default)
SAME_VALUES_IF_SAME_DTYPE = (aten.to.dtype, aten.to.dtype_layout, aten._to_copy.default)


class NoMatch(Exception):
    """Why one softmax is not rewritten (one line, for the notes)."""


@dataclasses.dataclass(frozen=True)
class Attention:
    """One matched block: SDPA(q, kT^T, v, mask, scale) replaces the output of `pv`."""

    pv: torch.fx.Node  # probabilities @ v
    q: torch.fx.Node
    kt: torch.fx.Node
    v: torch.fx.Node
    scale: float
    mask: torch.fx.Node | None
    # "additive" (float, added to the scores), "attend" (bool, True = attend, SDPA's meaning),
    # "masked" (bool, True = masked: masked_fill's meaning, negated for SDPA)
    mask_kind: str | None
    chain: tuple[torch.fx.Node, ...]  # pv back to q @ kT: what the rewrite leaves dead


class SdpaRewrite(Pass[NoConfig]):
    name = "sdpa_rewrite"
    description = "replace hand-written attention (softmax(q @ k^T * scale + mask) @ v) with scaled_dot_product_attention"
    devices = ("cpu", "cuda")
    stage = "rewrite"

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if workload is not None and not could_hold_hand_written_attention(workload.module):
            return []  # no softmax anywhere, or transformers models already on SDPA: nothing to rewrite
        return [Variant(
            NoConfig(), "sdpa", "hand-written attention as one scaled_dot_product_attention call", cost=0.5,
            addresses={
                "memory": Claim(0.6, "fused attention never writes the L x L scores and probabilities out"),
                "overhead": Claim(0.3, "one attention op per block instead of matmul, scale, mask, softmax, matmul"),
            },
        )]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        from hone.runtimes._export import export_program

        program, batch = export_program(model.module.eval(), tuple(ctx.example_inputs), dynamic_batch=True)
        graph_module = program.module()
        found, left_alone = find_attention(graph_module.graph)
        if not found:
            why = "; ".join(f"{reason} (x{n})" for reason, n in left_alone.items()) or "the graph has no softmax"
            if count_sdpa(graph_module):
                why += f"; its attention already is scaled_dot_product_attention ({count_sdpa(graph_module)} calls)"
            raise Unsupported(f"sdpa_rewrite: no hand-written attention matched: {why}")
        replaced: dict[torch.fx.Node, torch.fx.Node] = {}
        for attention in found:
            rewrite(graph_module.graph, attention, replaced)
        graph_module.graph.lint()
        graph_module.recompile()
        module = RewrittenGraph(graph_module).to(ctx.device)
        notes: dict[str, Any] = {
            "attention_blocks": len(found),
            "sdpa_nodes": count_sdpa(graph_module),
            "masks": dict(Counter(a.mask_kind or "none" for a in found)),
            "scales": sorted({round(a.scale, 6) for a in found}),
            **({"left_alone": dict(left_alone)} if left_alone else {}),
            **batch,
            **backend_notes(sdpa_backends(module, ctx.example_inputs, ctx.device)),
        }
        return Artifact("torch", module, compute_dtype=model.compute_dtype, notes=notes)


class RewrittenGraph(torch.nn.Module):
    """Holds the rewritten graph. `ExportedProgram.module()` pins train()/eval() to raise, and
    every runtime calls `.to(device).eval()`: the graph was captured in eval form (dropout as
    no-ops) and cannot change mode, so `train` here sets the flag without reaching it."""

    def __init__(self, graph_module: torch.fx.GraphModule):
        super().__init__()
        self.graph_module = graph_module

    def train(self, mode: bool = True) -> "RewrittenGraph":
        self.training = mode
        return self

    def forward(self, *args: torch.Tensor):
        return self.graph_module(*args)


def count_sdpa(module: torch.nn.Module) -> int:
    """scaled_dot_product_attention nodes in every graph inside `module`."""
    return sum(
        1 for m in module.modules() if isinstance(m, torch.fx.GraphModule)
        for n in m.graph.nodes if n.op == "call_function" and n.target is SDPA
    )


def find_attention(graph: torch.fx.Graph) -> tuple[list[Attention], Counter]:
    """The attention blocks to rewrite, and why each other softmax is left alone."""
    found, left_alone = [], Counter()
    for node in graph.nodes:
        if node.op == "call_function" and node.target in SOFTMAXES:
            try:
                found.append(_match(node))
            except NoMatch as exc:
                left_alone[str(exc)] += 1
    return found, left_alone


def rewrite(graph: torch.fx.Graph, a: Attention, replaced: dict[torch.fx.Node, torch.fx.Node]) -> torch.fx.Node:
    """Insert SDPA before `a.pv`, route pv's users to it and erase the chain it replaced.
    `replaced` maps earlier blocks' pv nodes to their SDPA: a block whose q, k or v is an
    earlier block's output reads the new node, so the old chain does not stay alive for it."""
    rank = _val(a.q).dim()
    q, kt, v, mask = (replaced.get(n, n) for n in (a.q, a.kt, a.v, a.mask))
    with graph.inserting_before(a.pv):
        new: list[torch.fx.Node] = []

        def call(target, *args, **kwargs) -> torch.fx.Node:
            node = graph.call_function(target, args, kwargs)
            new.append(node)
            return node

        k = kt.args[0] if _transposes_last_two(kt) else call(aten.transpose.int, kt, -2, -1)
        if a.mask_kind == "masked":  # masked_fill's True = masked; SDPA's True = attend
            mask = call(aten.logical_not.default, mask)
        if rank == 3:  # the fused kernels take 4-D inputs only
            q, k, v = (call(aten.unsqueeze.default, t, 0) for t in (q, k, v))
            if mask is not None and _val(a.mask).dim() == 3:
                mask = call(aten.unsqueeze.default, mask, 0)
        out = call(SDPA, q, k, v, mask, 0.0, False, scale=a.scale)
        if rank == 3:
            out = call(aten.squeeze.dim, out, 0)
    for node in new:  # provenance for later passes and error messages: the user's module and line
        for key in ("nn_module_stack", "stack_trace", "source_fn_stack"):
            if key in a.pv.meta:
                node.meta[key] = a.pv.meta[key]
    out.meta["val"] = a.pv.meta.get("val")
    a.pv.replace_all_uses_with(out)
    replaced[a.pv] = out
    # Only the replaced chain is erased (a graph-wide dead-code pass would also drop code the
    # model left dead, a pooler under a wrapper, and credit that to this rewrite).
    for node in (*a.chain, kt):
        if not node.users and node.op == "call_function":
            graph.erase_node(node)
    return out


def _match(softmax: torch.fx.Node) -> Attention:
    scores = softmax.args[0]
    score_val = _val(scores)
    dim = softmax.args[1] if len(softmax.args) > 1 else softmax.kwargs.get("dim")
    if not isinstance(dim, int) or dim % score_val.dim() != score_val.dim() - 1:
        raise NoMatch(f"softmax over dim {dim} of a {score_val.dim()}-d tensor, not the last")
    if softmax.target is aten._softmax.default:
        if softmax.args[2]:
            raise NoMatch("softmax computes half in float")
    else:
        dtype = softmax.args[2] if len(softmax.args) > 2 else softmax.kwargs.get("dtype")
        if dtype is not None and dtype != score_val.dtype:
            raise NoMatch(f"softmax computes in {dtype}, the scores are {score_val.dtype}")
    if not isinstance(scores, torch.fx.Node) or len(scores.users) != 1:
        raise NoMatch("the scores feeding softmax are used more than once")
    between = _probabilities_times_v(softmax)  # softmax .. pv
    pv, v = between[-1], between[-1].args[1]

    node, post_scale, post_ops = _scale_ops(scores)
    mask, kind, mask_op = None, None, [node]
    if node.target is aten.add.Tensor and node.kwargs.get("alpha", 1) == 1:
        node, mask = _split_additive(node)
        kind = "additive"
    elif node.target is aten.masked_fill.Scalar:
        _check_minus_inf(node.args[2])
        node, mask, kind = _sole_use(node.args[0], node), node.args[1], "masked"
    elif node.target is aten.where.ScalarOther:  # where(m, scores, -inf): True = attend
        _check_minus_inf(node.args[2])
        node, mask, kind = _sole_use(node.args[1], node), node.args[0], "attend"
    elif node.target is aten.where.ScalarSelf:  # where(m, -inf, scores): True = masked
        _check_minus_inf(node.args[1])
        node, mask, kind = _sole_use(node.args[2], node), node.args[0], "masked"
    if kind == "additive" and post_scale != 1.0:
        raise NoMatch("the scores are scaled after the additive mask is added")
    if mask is not None:
        node, pre_scale, pre_ops = _scale_ops(node)
    else:
        pre_scale, pre_ops, mask_op = 1.0, [], []
    if node.target not in MATMULS:
        raise NoMatch(f"the softmax input comes from {_op(node)}, not q @ k^T (times constants, plus a mask)")
    q, kt = node.args
    _check_shapes(q, kt, v, score_val)
    if mask is not None:
        _check_mask(mask, kind, score_val)
    chain = (*reversed(between), *post_ops, *mask_op, *pre_ops, node)
    return Attention(pv, q, kt, v, pre_scale * post_scale, mask, kind, chain)


def _probabilities_times_v(softmax: torch.fx.Node) -> list[torch.fx.Node]:
    """softmax, the ops after it that leave the probabilities' values as they are, and the
    `probabilities @ v` node, in graph order."""
    chain = [softmax]
    while True:
        node = chain[-1]
        if len(node.users) != 1:
            raise NoMatch("the attention probabilities are used more than once (returned or reused)")
        user = next(iter(node.users))
        if user.op == "call_function" and user.target in MATMULS and user.args[0] is node and user.args[1] is not node:
            return [*chain, user]
        if not _keeps_values(user, node):
            raise NoMatch(f"the softmax output goes through {_op(user)} before the matmul with v")
        chain.append(user)


def _keeps_values(user: torch.fx.Node, node: torch.fx.Node) -> bool:
    if user.op != "call_function" or not user.args or user.args[0] is not node:
        return False
    if user.target is aten.dropout.default:
        train = user.args[2] if len(user.args) > 2 else user.kwargs.get("train")
        return train is False  # dropout in an eval graph is the identity
    if user.target in SAME_VALUES:
        return True
    if user.target in SAME_VALUES_IF_SAME_DTYPE:
        before, after = _val(node), _val(user)
        return before.dtype == after.dtype and before.device == after.device
    return False


def _scale_ops(node: Any) -> tuple[torch.fx.Node, float, list[torch.fx.Node]]:
    """Walk back through mul/div by Python numbers: the node before them, their product, and
    the mul/div nodes walked (last first)."""
    scale, walked = 1.0, []
    while isinstance(node, torch.fx.Node) and node.op == "call_function" and node.target in SCALES:
        x, c = node.args[0], node.args[1]
        if node.target in (aten.mul.Tensor, aten.mul.Scalar) and _is_number(x) and not _is_number(c):
            x, c = c, x
        if not _is_number(c):
            raise NoMatch(f"the scores are {'multiplied' if 'mul' in _op(node) else 'divided'} by a tensor, not a constant")
        if not math.isfinite(c) or c <= 0:
            raise NoMatch(f"the scores are scaled by {c}, not a positive finite constant")
        scale = scale * c if node.target in (aten.mul.Tensor, aten.mul.Scalar) else scale / c
        walked.append(node)
        node = _sole_use(x, node)
    if not isinstance(node, torch.fx.Node):
        raise NoMatch("the softmax input is a constant")
    return node, float(scale), walked


def _split_additive(add: torch.fx.Node) -> tuple[torch.fx.Node, torch.fx.Node]:
    """(the scores side, the mask side) of `scores + mask`, in either order: the scores side
    is the one that reaches q @ k^T through constant scales."""
    a, b = add.args
    for scores, mask in ((a, b), (b, a)):
        if not isinstance(scores, torch.fx.Node) or not isinstance(mask, torch.fx.Node):
            continue
        try:
            end, _, _ = _scale_ops(scores)
        except NoMatch:
            continue
        if end.target in MATMULS:
            return _sole_use(scores, add), mask
    raise NoMatch("neither side of the mask add is q @ k^T times constants")


def _sole_use(node: Any, user: torch.fx.Node) -> torch.fx.Node:
    if not isinstance(node, torch.fx.Node) or len(node.users) != 1:
        raise NoMatch(f"the scores feeding {_op(user)} are used more than once")
    return node


def _check_minus_inf(value: Any) -> None:
    if not (_is_number(value) and math.isinf(value) and value < 0):
        raise NoMatch(f"the mask fills {value!r}, not -inf (SDPA's boolean mask is exactly -inf)")


def _check_shapes(q: Any, kt: Any, v: Any, scores: torch.Tensor) -> None:
    if not all(isinstance(t, torch.fx.Node) for t in (q, kt, v)):
        raise NoMatch("q, k or v is not a tensor of the graph")
    qv, ktv, vv = _val(q), _val(kt), _val(v)
    rank = qv.dim()
    if rank < 3 or ktv.dim() != rank or vv.dim() != rank:
        raise NoMatch("q, k^T and v are not batched matrices of one rank (3-d or more)")
    if not (_dims(qv.shape[:-2]) == _dims(ktv.shape[:-2]) == _dims(vv.shape[:-2]) == _dims(scores.shape[:-2])):
        raise NoMatch("q, k and v batch dimensions differ (a broadcasting matmul)")
    if _dims(qv.shape[-1:]) != _dims(ktv.shape[-2:-1]) or _dims(ktv.shape[-1:]) != _dims(vv.shape[-2:-1]):
        raise NoMatch("the matmul shapes are not (L, E) @ (E, S) and (L, S) @ (S, Ev)")
    if not (qv.dtype == ktv.dtype == vv.dtype == scores.dtype) or not qv.dtype.is_floating_point:
        raise NoMatch("q, k and v are not of one floating dtype")


def _check_mask(mask: Any, kind: str | None, scores: torch.Tensor) -> None:
    if not isinstance(mask, torch.fx.Node):
        raise NoMatch("the mask is a constant, not a tensor")
    mv = _val(mask)
    if kind == "additive" and mv.dtype != scores.dtype:
        raise NoMatch(f"the additive mask is {mv.dtype}, the scores {scores.dtype}")
    if kind in ("masked", "attend") and mv.dtype != torch.bool:
        raise NoMatch(f"the boolean mask is {mv.dtype}")
    if mv.dim() > scores.dim() or any(
        m != "1" and m != s for m, s in zip(reversed(_dims(mv.shape)), reversed(_dims(scores.shape)))
    ):
        raise NoMatch("the mask does not broadcast to the scores")


def _transposes_last_two(node: torch.fx.Node) -> bool:
    if node.op != "call_function" or node.target is not aten.transpose.int:
        return False
    rank = _val(node).dim()
    return {node.args[1] % rank, node.args[2] % rank} == {rank - 2, rank - 1}


def _val(node: Any) -> torch.Tensor:
    value = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    if not isinstance(value, torch.Tensor):
        raise NoMatch("the graph records no tensor shape here")
    return value


def _dims(shape) -> list[str]:
    """Sizes as strings: a symbolic batch compares equal to itself and to nothing else."""
    return [str(d) for d in shape]


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _op(node: Any) -> str:
    if not isinstance(node, torch.fx.Node):
        return repr(node)
    return getattr(node.target, "__name__", str(node.target)) if node.op == "call_function" else node.op
