"""Static int8 through torchao's PT2E flow: export, insert observers, calibrate, convert.

The converted graph keeps quantize/dequantize pairs around fp32 ops; Inductor (with freezing)
pattern-matches them into oneDNN int8 kernels with prepacked weights. Without Inductor the
q/dq graph runs in fp32 and is slower than the original, so the recipe always compiles.

What gets quantized: torchao's default x86 recipe, i.e. Linear and Conv2d (plus the int8-in/
int8-out ops between them: pooling, cat); attention matmuls stay float (torchao leaves
aten.matmul out of its default recipe, and SDPA is never annotated). On MiniLM that is exactly
the 36 encoder Linears. Measured there (64 built-in sentences, 2-core Zen 4, bs8):
  all 36 Linears (default)          mean cosine 0.9925 (worst 0.959)   50 ms  (eager fp32 162 ms)
  FFN down-projections kept float   mean cosine 0.9963 (worst 0.978)   81 ms
  dynamic activations instead       mean cosine 0.9932 (worst 0.968)
The default is within the 0.01 default budget; the six FFN down-projections (inputs: GELU
outputs, long-tailed) are the most sensitive group, which the accuracy fallback can keep in float
(`keep_float`) when a tighter budget asks for it, at 1.6x the latency.

The export, quantizer and graph helpers here are shared with the QAT pass (pt2e_qat)."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from hone._optional import require
from hone.errors import InputError, Unsupported
from hone.passes.quantize import FLATIO_PREFIX, SATURATION_NOTE, QuantConfig, QuantizationPass, Scheme
from hone.passes.quantize import check_keep_float
from hone.plugin import Artifact, BuildContext, Claim, Variant
from hone.runtimes._export import batch_dynamic_shapes, export_failure

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

OP_NAME = re.compile(r"\b(?:aten|prims|onednn|quantized_decomposed|torch\.ops\.\w+)\.[\w.]+")
# The module types X86InductorQuantizer quantizes (the layers keep_float may name).
PT2E_LAYER_TYPES = ("Linear", "Conv2d")


@dataclasses.dataclass(frozen=True)
class Pt2eInt8Config(QuantConfig):
    # Histogram observers settle after a few hundred samples; more costs build time only.
    calibration_samples: int = 128
    # Either keeps u8 x s8 pair sums inside the 16 bits that AVX2's VPMADDUBSW saturates at:
    # 7-bit weights (per channel: cheap in accuracy) or 7-bit activations (per tensor: dearer).
    # variants() picks 7-bit weights where the probe finds no VNNI; with VNNI both only cost
    # precision. Measured on MiniLM with oneDNN held to AVX2 (mean cosine to fp32, bs8): 8-bit
    # 0.9885 (saturating), 7-bit activations 0.9841, 7-bit weights 0.9928 (VNNI, 8-bit: 0.9929).
    weight_bits: int = 8
    reduce_range: bool = False  # 7-bit activations

    def validate(self) -> None:
        if self.calibration_samples < 1:
            raise InputError(f"calibration_samples must be at least 1, got {self.calibration_samples}")
        check_weight_bits(self.weight_bits)


class Pt2eInt8(QuantizationPass[Pt2eInt8Config]):
    name = "pt2e_int8"
    Config = Pt2eInt8Config
    description = "static int8 (PT2E + X86InductorQuantizer), lowered by Inductor to oneDNN int8"
    requires = ("torchao",)
    devices = ("cpu",)
    # A quantize/dequantize graph: in eager it runs in fp32 and slower than the original; a
    # Dynamo/torch.export-based runtime with freezing lowers it to oneDNN int8 kernels.
    produces = "torch-quantized"
    layer_types = PT2E_LAYER_TYPES

    def scheme(self) -> Scheme:
        # int8 per-channel symmetric weights, uint8 per-tensor asymmetric static activations.
        cfg = self.config
        return Scheme(weight_bits=cfg.weight_bits, activation_bits=7 if cfg.reduce_range else 8)

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if device != "cpu":
            return []
        # oneDNN has int8 kernels for AVX2 as well as VNNI and AMX: offered on every x86 CPU,
        # with 7-bit weights where the probe finds no VNNI (Hardware.int8_dot_saturates).
        saturates = hw is not None and hw.int8_dot_saturates
        origin = "static int8 activations and weights (oneDNN)" + (SATURATION_NOTE if saturates else "")
        return [Variant(Pt2eInt8Config(weight_bits=7 if saturates else 8), "pt2e-int8", origin, cost=0.5,
                        compute_dtype="int8", addresses={"compute": Claim(0.8, "", unit="int8")})]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        cfg = self.config
        require("torchao")
        check_keep_float(model.module, cfg.keep_float, self.layer_types)
        from torchao.quantization.pt2e import allow_exported_model_train_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        quantizer = x86_quantizer(cfg.keep_float, reduce_range=cfg.reduce_range, weight_bits=cfg.weight_bits)
        try:
            exported, batch = export_batch_dynamic(model.module, tuple(ctx.example_inputs))
            prepared = prepare_pt2e(exported, quantizer)  # returns a new module: the input is untouched
            start = time.perf_counter()
            seen = _calibrate(prepared, ctx, cfg.calibration_samples)
            calibration_s = time.perf_counter() - start
            converted = convert_pt2e(prepared)
            # Every runtime calls .eval(), which an exported module refuses; this maps it to the
            # graph's eval form (dropout/batchnorm), which export already captured from eval mode.
            allow_exported_model_train_eval(converted)
        except (InputError, Unsupported):
            raise
        except Exception as exc:  # export/quantizer failures are many types; the reason is what matters
            raise Unsupported(f"pt2e int8: {_reason(exc)}") from exc
        q_ops = _count_qdq_ops(converted)
        if q_ops == 0:
            raise Unsupported("pt2e int8: the X86 quantizer found no Linear/Conv op to quantize")
        # Only constant (frozen) int8 weights can be prepacked by Inductor: the runtime for this
        # format (inductor) freezes on CPU, compiling under a scoped freezing patch.
        notes = {"quantization": "int8-static-pt2e", "quantizer": "x86_inductor",
                 "calibration_samples": seen, "calibration_s": round(calibration_s, 3),
                 "weight_bits": cfg.weight_bits, "reduce_range": cfg.reduce_range, "qdq_ops": q_ops, "kept_float": list(cfg.keep_float),
                 **batch}
        return Artifact(self.produces, QuantizedGraph(converted), compute_dtype="int8", notes=notes)


def export_graph(
    module: torch.nn.Module, args: tuple[torch.Tensor, ...], dynamic_shapes: Any = None
) -> torch.fx.GraphModule:
    """torch.export to an aten GraphModule without dead code.

    Dead code is not cosmetic here: a model that computes an output it then drops (HF BertModel's
    pooler, dense + tanh, under a wrapper that returns only last_hidden_state) leaves a tanh with
    no users in the exported graph, and X86InductorQuantizer's Linear+unary fusion annotator
    indexes that partition's (empty) output nodes: IndexError in prepare_pt2e. Dropping the dead
    nodes also saves computing them. Impure nodes (buffer updates in training graphs) stay."""
    graph_module = torch.export.export(module, args, dynamic_shapes=dynamic_shapes).module()
    graph_module.graph.eliminate_dead_code()
    graph_module.recompile()
    return graph_module


def export_batch_dynamic(
    module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], static_inputs: tuple[torch.Tensor, ...] | None = None
) -> tuple[torch.fx.GraphModule, dict[str, Any]]:
    """The graph with dim 0 of every input one symbolic batch (traced on `inputs`), so one graph
    serves every batch size; a model whose code fixes the batch is exported at `static_inputs`
    (default `inputs`), with the reason in the facts. Shared with the QAT pass."""
    sample, specs = batch_dynamic_shapes(module, inputs)
    try:
        return export_graph(module, sample, dynamic_shapes=specs), {"dynamic_batch": True}
    except Exception as exc:  # the model's code fixes the batch
        static = export_failure(exc)
    return export_graph(module, static_inputs or inputs), {"dynamic_batch": False, "static_batch_reason": static}


def check_weight_bits(bits: int) -> None:
    if bits not in (7, 8):
        raise InputError(f"weight_bits must be 8, or 7 (no VPMADDUBSW saturation without VNNI), not {bits}")


def x86_quantizer(keep_float: Sequence[str], *, is_qat: bool = False, reduce_range: bool = False, weight_bits: int = 8):
    """X86InductorQuantizer with torchao's default x86 config, leaving `keep_float` layers (named
    in the user's model) in float. The exported graph's module names carry FlatIO's prefix.
    `weight_bits` 7: symmetric weights in [-64, 63] (the int8 kernels take them unchanged)."""
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    class Quantizer(X86InductorQuantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            if is_qat:
                _unmark_float_convs(model)
            return model

    quantizer = Quantizer()
    config = get_default_x86_inductor_quantization_config(is_qat=is_qat, reduce_range=reduce_range)
    if weight_bits != 8:
        half = 2 ** (weight_bits - 1)
        config = dataclasses.replace(config, weight=dataclasses.replace(config.weight, quant_min=-half, quant_max=half - 1))
    quantizer.set_global(config)
    for name in keep_float:
        # Module-name configs are annotated first and win; None marks the patterns as float.
        quantizer.set_module_name_qconfig(FLATIO_PREFIX + name, None)
    return quantizer


def _unmark_float_convs(model: torch.fx.GraphModule) -> None:
    """Drop the empty "not quantized" annotation of convs kept in float. prepare_qat_pt2e fuses
    every conv-bn pair for QAT, kept ones too, and re-keys the conv's annotation by position:
    an empty one raises IndexError (torchao 0.18). Without an annotation the pair is fused and
    left unquantized, as wanted; the annotation was only needed while annotating."""
    convs = (torch.ops.aten.conv1d.default, torch.ops.aten.conv2d.default)
    for node in model.graph.nodes:
        annotation = node.meta.get("quantization_annotation")
        if node.target in convs and annotation is not None and not annotation.input_qspec_map:
            del node.meta["quantization_annotation"]


class QuantizedGraph(torch.nn.Module):
    """Holds the converted graph so `.eval()` returns a module: torchao's patched eval on the
    graph itself returns None, and runtimes chain `module.to(device).eval()`. Module.train
    reaches the graph as a child, where the patched train ignores the return value."""

    def __init__(self, graph_module: torch.nn.Module):
        super().__init__()
        self.graph_module = graph_module

    def forward(self, *args: torch.Tensor):
        return self.graph_module(*args)


def _calibrate(prepared: torch.nn.Module, ctx: BuildContext, limit: int) -> int:
    """Run whole batches until `limit` samples have passed the observers (an exported graph may
    take only the example batch size); without calibration data the example inputs are used.
    Returns how many samples ran, padding included."""
    seen = 0
    with torch.no_grad():
        for batch in ctx.calibration_batches():
            if seen >= limit:
                break
            prepared(*batch)
            seen += int(batch[0].shape[0])
    return seen


def _count_qdq_ops(graph_module: torch.nn.Module) -> int:
    """quantize_per_* and dequantize_per_* calls: zero means the quantizer annotated nothing."""
    graph = getattr(graph_module, "graph", None)
    if graph is None:
        return 0
    return sum(
        1 for n in graph.nodes if n.op == "call_function" and "quantize_per" in str(n.target)
    )


def _reason(exc: BaseException) -> str:
    """First line of the root cause, with the op it names when that is further down."""
    root = exc
    while root.__cause__ is not None or (root.__context__ is not None and not root.__suppress_context__):
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    text = str(root).strip() or type(root).__name__
    first = next((line.strip() for line in text.splitlines() if line.strip()), text)
    line = f"{type(root).__name__}: {first}"
    op = OP_NAME.search(text)
    if op and op.group(0) not in line:
        line += f" (op {op.group(0)})"
    return line
