"""ONNX -> ONNX with ONNX Runtime's transformer fusions: attention, LayerNorm + residual and
bias + GELU subgraphs become ORT's fused contrib ops (com.microsoft Attention,
SkipLayerNormalization, BiasGelu, ...), what HF Optimum's ORTOptimizer levels O2-O4 do. The
session's own graph optimizations (the onnxruntime runtime's levels) know none of these.

Two fusers, in this order:
- onnxscript's `ort_fusions` (optimize_for_ort): written for torch.export / dynamo graphs, which
  is what hone's export gives. ONNX Runtime's own optimizer was written for TorchScript exports
  and matches no attention in them (MiniLM's dynamo export: 0 of 6 attention blocks, and no
  SkipLayerNormalization; the SDPA decomposition scales q and k separately and guards the
  softmax with IsNaN/Where, which its patterns do not know); onnxscript fuses all six.
- `onnxruntime.transformers.optimizer.optimize_model` (model_type "bert": its generic encoder
  fusions; opt_level 0: Python fusions only, so the runtime's session level still decides ORT's
  own optimizations) for what the first left: a pattern it knows and onnxscript does not.
Each fuser's graph must load in ONNX Runtime and give the unfused graph's outputs on the example
inputs within the fp32 tolerance, or it is dropped (noted) and the next fuser works on the graph
before it: pattern rewriters have bugs (onnxscript 0.7.2's MultiHeadAttention fusion on GPT-2's
export leaves a 3-D tensor where Conv1D's Gemm takes the 2-D view: the graph does not load).
What was fused is read back from the final graph (fused operators it has that the input had
not); a graph where nothing matched is `unsupported`, not timed as a no-op.

The fused ops are ONNX Runtime's contrib ops (domain com.microsoft). In hone only ONNX Runtime
takes ONNX on CPU, so that is where the pass is offered: alone in the default plan, and on
request onto every level of the onnxruntime runtime and under ORT's quantizers, which take the
fused graph (a fused Attention
stays float there: hone quantizes layers, and Attention's packed q/k/v weight is no one layer's).
Not on CUDA: there TensorRT takes ONNX too, and its parser has no com.microsoft ops. (OpenVINO's
ONNX frontend does read them, but hone converts to OpenVINO from the torch model.)
Exact rewrites only: FastGelu for an erf GELU (ORT's "gelu approximation") stays off, so the
fused graph meets the fp32 tolerance.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hone.config import NoConfig
from hone.errors import Unsupported
from hone.passes.base import Pass
from hone.plugin import Artifact, BuildContext, Claim, Variant

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

# What ORT's optimizer reports as fused (BertOnnxModel.get_fused_operator_statistics lists
# these); LayerNormalization is a standard op the dynamo export already emits, so only what
# the pass adds counts.
FUSED_OPS = (
    "Attention", "MultiHeadAttention", "EmbedLayerNormalization", "SkipLayerNormalization", "LayerNormalization",
    "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization", "Gelu", "FastGelu", "BiasGelu",
    "GemmFastGelu", "RotaryEmbedding", "GroupQueryAttention",
)
# ORT's generic encoder fusions; the other model types add TorchScript-specific attention
# patterns, which a dynamo export does not have.
ORT_MODEL_TYPE = "bert"


class OrtTransformerFusions(Pass[NoConfig]):
    name = "ort_transformer_fusions"
    description = "ONNX Runtime's transformer fusions: attention, SkipLayerNorm, BiasGelu (onnxscript ort_fusions + onnxruntime.transformers)"
    requires = ("onnxruntime", "onnx", "onnxscript")
    consumes = ("onnx",)
    produces = "onnx"
    stage = "rewrite"  # before ORT's quantizers: they quantize the fused graph's remaining MatMuls

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if device != "cpu":  # the fused ops run only in ONNX Runtime; on CUDA TensorRT takes ONNX too
            return []
        if workload is not None and not could_hold_attention(workload.module):
            return []  # nothing for the fusions to match (a CNN, an MLP)
        return [Variant(
            NoConfig(), "ort-fusions", "ONNX Runtime's fused attention, SkipLayerNorm and BiasGelu kernels",
            # Two fusers and the check's sessions: 1.5 s on MiniLM, where the export (0.5) takes 3.4 s.
            cost=0.2,
            addresses={
                "memory": Claim(0.7, "fused attention and norms keep the scores and residual sums out of memory"),
                "overhead": Claim(0.4, "one kernel per attention block, norm and GELU instead of tens of ops"),
                "compute": Claim(0.3, "one GEMM for the packed q, k and v projections"),
            },
            # On ONNX Runtime's default level in the default plan; under its other levels and in
            # front of its quantizers on request (ort-fusions+ort-int8-dynamic).
            stack=False,
        )]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        import onnx

        if model.path is None:
            raise Unsupported("ORT transformer fusions need an ONNX file, got an artifact without a path")
        source = Path(model.path)
        graph = onnx.load(str(source), load_external_data=False).graph
        reference = _run(source, ctx)
        current, fused_by, dropped = source, {}, {}
        for fuser, fuse in (("onnxscript", _onnxscript_fusions), ("onnxruntime", _ort_fusions)):
            target = ctx.workdir / f"model.{fuser}-fused.onnx"
            try:
                with _quiet():
                    fuse(current, target)
                problem = _restore_inputs(graph, target) or _differs(_run(target, ctx), reference, graph)
            except Exception as exc:  # the fuser's (or the session's on its graph) failure; ours re-raises
                problem = self.backend_failure(exc)
                if problem is None:
                    raise
            if problem:  # a rewrite that breaks the graph is dropped; the other fuser may still match
                dropped[fuser] = problem
                continue
            added = _fused(_ops(current), _ops(target))
            if added:
                fused_by[fuser], current = added, target
        fused = _fused(_ops(source), _ops(current))
        if not fused:
            why = "".join(f"; {fuser}'s fusions dropped as wrong: {problem}" for fuser, problem in dropped.items())
            raise Unsupported(
                f"{self.name}: no transformer subgraph matched: no attention, LayerNorm + residual or bias + GELU that "
                f"onnxscript's ort_fusions or ONNX Runtime's optimizer (model_type bert) fuse{why}"
            )
        notes: dict[str, Any] = {
            "fused_operators": fused,
            "fused_by": fused_by,
            "nodes_before": sum(_ops(source).values()),
            "nodes_after": sum(_ops(current).values()),
            **({"dropped": dropped} if dropped else {}),
        }
        return Artifact("onnx", module=model.module, path=current, compute_dtype=model.compute_dtype, notes=notes)


def could_hold_attention(module: Any) -> bool:
    """A cheap static guess whether the fusions have something to match: a module whose class
    is named for attention (transformers' BertSelfAttention, GPT2Attention, ViTSelfAttention;
    torch's MultiheadAttention), or softmax written in a forward (hand-written attention)."""
    from hone.passes.torch._attention import could_hold_hand_written_attention

    op_types = getattr(module, "op_types", None)  # a module standing for an ONNX graph lists its ops
    if op_types is not None:
        return "Softmax" in op_types or any("Attention" in op for op in op_types)
    # A loaded TorchScript module keeps its class's name as `original_name`.
    if any("attention" in (getattr(m, "original_name", "") or type(m).__name__).lower() for m in module.modules()):
        return True
    return could_hold_hand_written_attention(module)


def _onnxscript_fusions(source: Path, target: Path) -> None:
    """onnxscript's ORT fusions on `source`, saved to `target` (weights in a data file beside
    it, as the export writes them). Node metadata is kept: ORT's quantizers find layers by the
    export's scope names on the MatMuls left unfused."""
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    fused, _ = optimize_for_ort(ir.load(str(source)), clear_metadata=False)
    ir.save(fused, str(target), external_data=target.name + ".data")


def _ort_fusions(source: Path, target: Path) -> None:
    """ONNX Runtime's transformers optimizer on `source`, saved to `target`."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions(ORT_MODEL_TYPE)
    # A raw 0/1 mask, as the model takes it: "bert"'s default turns the mask into a 1-D index
    # of its end, which assumes right-side padding.
    options.use_raw_attention_mask(True)
    options.enable_gelu_approximation = False  # FastGelu for an erf GELU is an approximation
    optimizer = optimize_model(str(source), model_type=ORT_MODEL_TYPE, num_heads=0, hidden_size=0, opt_level=0,
                               use_gpu=False, optimization_options=options)
    optimizer.save_model_to_file(str(target), use_external_data_format=True, all_tensors_to_one_file=True)


def _ops(path: Path) -> Counter:
    import onnx

    return Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)


def _fused(before: Counter, after: Counter) -> dict[str, int]:
    """The fused operators `after` has beyond `before`, by op type."""
    gained = Counter({op: after[op] for op in FUSED_OPS}) - Counter({op: before[op] for op in FUSED_OPS})
    return dict(sorted(gained.items()))


def _restore_inputs(source: Any, path: Path) -> str | None:
    """Put back graph inputs a fuser pruned as unused (a mask no fused op reads), in the
    model's order: runners feed every input by the model's names. Returns why the graph's
    outputs no longer are the model's, if they are not (a fuser's bug); else None."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    outputs = [o.name for o in source.output]
    if [o.name for o in proto.graph.output] != outputs:
        return f"the graph's outputs {outputs} became {[o.name for o in proto.graph.output]}"
    present = {i.name: i for i in proto.graph.input}
    if all(i.name in present for i in source.input):
        return None
    ordered = [present.get(i.name, i) for i in source.input]
    del proto.graph.input[:]
    proto.graph.input.extend(ordered)
    onnx.save(proto, str(path))  # the weights stay in their data file, referenced as before
    return None


def _run(path: Path, ctx: BuildContext) -> list[Any]:
    """The graph's outputs on the example inputs, in an ONNX Runtime session of its own."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = ctx.threads
    options.log_severity_level = 3  # its warnings about the fused graph's shapes are not failures
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {i.name: t.detach().cpu().numpy() for i, t in zip(session.get_inputs(), ctx.example_inputs)}
    return session.run(None, feed)


def _differs(got: list[Any], want: list[Any], graph: Any) -> str | None:
    """Why a fused graph's outputs are not the unfused graph's within the fp32 tolerance; None
    when they are. Checked here, not only by the sweep against eager: a fuser whose rewrite
    is wrong is dropped and the other one still gets its chance."""
    import torch

    from hone.validate.compare import compare_output

    for output, a, b in zip(graph.output, got, want):
        check = compare_output(output.name, torch.from_numpy(a), torch.from_numpy(b), "float32")
        if not check.passed:
            return f"output {output.name} differs from the unfused graph's by {check.max_abs_err:.3g} (atol {check.atol:.3g})"
    return None


@contextlib.contextmanager
def _quiet():
    """The fusers log each fusion and print shape-inference failures to stdout; both would
    garble the progress display (and a failure that matters raises)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)
