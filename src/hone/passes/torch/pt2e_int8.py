"""Static int8 through torchao's PT2E flow: export, insert observers, calibrate, convert.

The converted graph keeps quantize/dequantize pairs around fp32 ops; Inductor (with freezing)
pattern-matches them into oneDNN int8 kernels with prepacked weights. Without Inductor the
q/dq graph runs in fp32 and is slower than the original, so the recipe always compiles."""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

import torch

from hone._optional import require
from hone.config import Config
from hone.errors import InputError, Unsupported
from hone.passes.base import Pass
from hone.plugin import Artifact, BuildContext
from hone.search.recipe import Recipe, Step

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

OP_NAME = re.compile(r"\b(?:aten|prims|onednn|quantized_decomposed|torch\.ops\.\w+)\.[\w.]+")


@dataclasses.dataclass(frozen=True)
class Pt2eInt8Config(Config):
    # Histogram observers settle after a few hundred samples; more costs build time only.
    calibration_samples: int = 128
    # 7-bit activations avoid the u8*s8 overflow of pre-VNNI AVX2 kernels; with VNNI it only
    # loses precision, hence off.
    reduce_range: bool = False

    def validate(self) -> None:
        if self.calibration_samples < 1:
            raise InputError(f"calibration_samples must be at least 1, got {self.calibration_samples}")


class Pt2eInt8(Pass):
    name = "pt2e_int8"
    Config = Pt2eInt8Config
    description = "static int8 (PT2E + X86InductorQuantizer), lowered by Inductor to oneDNN int8"
    requires = ("torchao",)
    devices = ("cpu",)

    @classmethod
    def unavailable_here(cls, hw: "Hardware", device: str) -> str | None:
        if not hw.has_vnni:
            return "this CPU has no VNNI int8 dot products"
        return None

    @classmethod
    def propose(cls, workload: "Workload", hw: "Hardware", device: str) -> list[Recipe]:
        if device != "cpu":
            return []
        from hone.runtimes.inductor import InductorConfig

        # Proposed even without VNNI: available() then records why it was not run.
        steps = (Step(cls.name, cls.Config()),)
        runtime = Step("inductor", InductorConfig(freezing=True))
        return [Recipe("pt2e-int8", steps, runtime, "static int8 activations and weights (oneDNN)", "int8")]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        cfg: Pt2eInt8Config = self.config  # type: ignore[assignment]
        require("torchao")
        from torchao.quantization.pt2e import allow_exported_model_train_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )

        quantizer = X86InductorQuantizer()
        quantizer.set_global(get_default_x86_inductor_quantization_config(reduce_range=cfg.reduce_range))
        try:
            exported = torch.export.export(model.module, tuple(ctx.example_inputs)).module()
            prepared = prepare_pt2e(exported, quantizer)  # returns a new module: the input is untouched
            seen = _calibrate(prepared, ctx, cfg.calibration_samples)
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
        # Only constant (frozen) int8 weights can be prepacked by Inductor: the recipe's runtime
        # is inductor with freezing=True, which compiles under a scoped freezing patch.
        notes = {**model.notes, "quantization": "int8-static-pt2e", "quantizer": "x86_inductor",
                 "calibration_samples": seen, "reduce_range": cfg.reduce_range, "qdq_ops": q_ops}
        return Artifact("torch", QuantizedGraph(converted), compute_dtype="int8", notes=notes)


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
