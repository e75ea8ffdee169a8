"""fp8 (e4m3) Linear layers through torchao: weights stored in float8, activations scaled and
cast to float8 per call, `torch._scaled_mm` on the GPU's fp8 tensor cores.

Only GPUs with compute capability 8.9 or higher (Ada, Hopper, Blackwell) have fp8 GEMMs, so
the recipe is proposed everywhere and the planner records, anywhere else, why it cannot run:
a sweep reports it as unsupported instead of attempting it. The quantized layers take bf16
inputs and give bf16 outputs (per-row scales need bf16 weights), cast at the layer boundary.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import torch

from hone._optional import require
from hone.errors import InputError, Unsupported
from hone.passes.quantize import QuantConfig, QuantizationPass, Scheme, check_keep_float
from hone.passes.torch._gates import cuda_capability_gate, cuda_capability_now
from hone.passes.torch.weight_only import LINEAR, quantize_layers
from hone.plugin import Artifact, BuildContext, Variant

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

MIN_CAPABILITY = (8, 9)
NEEDS = "fp8 needs a CUDA GPU with compute capability 8.9 or higher (Ada, Hopper, Blackwell)"
GRANULARITIES = ("per_row", "per_tensor")
FP8_MULTIPLE = 16  # torch._scaled_mm takes dims that are multiples of 16


@dataclasses.dataclass(frozen=True)
class Fp8Config(QuantConfig):
    # per_row: one scale per activation row and per weight output channel (more accurate);
    # per_tensor: one scale each (the cheapest scaling).
    granularity: str = "per_row"

    def validate(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise InputError(f"fp8 granularity must be one of {', '.join(GRANULARITIES)}, not {self.granularity!r}")


class Fp8(QuantizationPass[Fp8Config]):
    name = "fp8"
    needs_calibration = False  # no activation ranges to fit
    Config = Fp8Config
    description = "float8 e4m3 weights and dynamic activations for Linear layers (torchao), CUDA sm89+"
    requires = ("torchao",)
    # cpu is listed so that a CPU run reaches unavailable_here and reports the capability reason.
    devices = ("cpu", "cuda")
    # float8 tensor-subclass weights: only Dynamo/torch.export-based runtimes lower them.
    produces = "torch-quantized"
    layer_types = LINEAR

    def scheme(self) -> Scheme:
        return Scheme(weight_bits=8, float_format="e4m3", activations="dynamic")

    @classmethod
    def unavailable_here(cls, hw: "Hardware", device: str) -> str | None:
        return cuda_capability_gate(hw, device, MIN_CAPABILITY, NEEDS)

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        # Offered on every device: where it cannot run, available() says why.
        return [Variant(Fp8Config(), "fp8", "fp8 e4m3 weights and dynamic activations (tensor cores)", compute_dtype="fp8")]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        cfg = self.config
        check_keep_float(model.module, cfg.keep_float, self.layer_types)  # a typo is wrong on any device
        reason = cuda_capability_now(ctx.device, MIN_CAPABILITY, NEEDS)
        if reason:
            raise Unsupported(reason)
        require("torchao")
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, PerTensor

        granularity = PerRow() if cfg.granularity == "per_row" else PerTensor()
        # set_inductor_config=False: the runtime's config decides the compile, not a global setter.
        ao_config = Float8DynamicActivationFloat8WeightConfig(granularity=granularity, set_inductor_config=False)

        def skip_reason(layer: torch.nn.Module) -> str | None:
            out_features, in_features = layer.weight.shape[-2:]
            if in_features % FP8_MULTIPLE or out_features % FP8_MULTIPLE:
                return (f"{in_features} in x {out_features} out: not both multiples of {FP8_MULTIPLE} "
                        "(fp8 GEMM requirement)")
            return None

        start = time.perf_counter()
        quantized, selected, skipped = quantize_layers(
            model.module, cfg.keep_float, ao_config, skip_reason, ctx.device, torch.bfloat16)
        quant_s = time.perf_counter() - start
        notes = {"quantization": "fp8-e4m3-dynamic",
                 "method": f"Float8DynamicActivationFloat8WeightConfig ({cfg.granularity})",
                 "granularity": cfg.granularity, "activation_dtype": "bfloat16", "kernel": "torch._scaled_mm",
                 "quantized_layers": len(selected), "skipped_layers": skipped,
                 "kept_float": list(cfg.keep_float), "quant_s": round(quant_s, 3)}
        return Artifact(self.produces, quantized, compute_dtype="fp8", notes=notes)
