"""Weight-only int8/int4 through torchao's `quantize_`: Linear weights stored in 8 or 4 bits,
activations left in floating point and the weights widened inside the kernel.

Where the kernels are (torch 2.13, torchao 0.18; measured and read from the sources):
- int8, CPU and CUDA: `aten._weight_int8pack_mm`, reached only through Inductor, whose
  weight-only pattern matches `mm(x, w_int8.to(bf16)) * scale` for *bfloat16* activations and
  scales. Eager runs torchao's dequantize-then-matmul. With float32 activations Inductor's
  freezing folds `w_int8.to(fp32)` into an fp32 constant: an fp32 GEMM again, no int8 left.
- int4, CPU: `aten._weight_int4pack_mm_for_cpu`, behind torchao's *prototype*
  `PrototypeInt4WeightOnlyConfig` (Int4OpaqueTensor; groups 32/64/128). The stable
  `Int4WeightOnlyConfig` has no CPU format in 0.18 (plain/preshuffled need mslk on CUDA,
  tile_packed_to_4d is CUDA tinygemm, plain_int32 is XPU/NPU). Its float32 path is a slow one
  (10-30x slower than fp32 eager here), its bfloat16 path is fast.
- int4, CUDA: `aten._weight_int4pack_mm` (tinygemm, `tile_packed_to_4d`), bfloat16 only,
  compute capability 8.0 or higher.
So by default the quantized layers take bfloat16 activations: each one casts its input to
bf16 and its output back (forward hooks), everything else in the model stays as it was.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import TYPE_CHECKING, Any, Callable

import torch

from hone._optional import require
from hone.errors import InputError, Unsupported
from hone.passes.quantize import QuantConfig, QuantizationPass, Scheme, check_keep_float, layers, unwrap
from hone.plugin import Artifact, BuildContext, Claim, Variant

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

BITS = (8, 4)
INT4_GROUPS = (32, 64, 128, 256)
CPU_INT4_GROUPS = (32, 64, 128)  # what Int4OpaqueTensor (the CPU int4 kernel's packing) takes
CPU_INT4_N_MULTIPLE = 16  # aten._convert_weight_to_int4pack_for_cpu: out_features divisible by 16
ACTIVATION_DTYPES = ("bfloat16", "float32")
LINEAR = ("Linear",)
DEQUANT_FALLBACK = ("dequantize-then-matmul: float32 activations have no int8 kernel (Inductor matches "
                    "aten._weight_int8pack_mm for bfloat16 only, and freezing folds the weights back to fp32)")


@dataclasses.dataclass(frozen=True)
class WeightOnlyConfig(QuantConfig):
    bits: int = 8
    # int8: 0 (one scale per output channel: the case with a kernel). int4: groups of this many
    # inputs share a scale and zero point.
    group_size: int = 0
    # What the quantized layers compute in; the int8/int4 kernels take bfloat16 (see above).
    activation_dtype: str = "bfloat16"

    def validate(self) -> None:
        if self.bits not in BITS:
            raise InputError(f"weight-only bits must be 8 or 4, not {self.bits}")
        if self.bits == 8 and self.group_size != 0:
            raise InputError(f"int8 weight-only is per output channel (group_size 0), not groups of {self.group_size}",
                             hint="torchao runs grouped int8 weights as dequantize-then-matmul")
        if self.bits == 4 and self.group_size not in INT4_GROUPS:
            raise InputError(f"int4 weight-only group_size must be one of {', '.join(map(str, INT4_GROUPS))}, not {self.group_size}")
        if self.activation_dtype not in ACTIVATION_DTYPES:
            raise InputError(f"activation_dtype must be one of {', '.join(ACTIVATION_DTYPES)}, not {self.activation_dtype!r}")


class WeightOnly(QuantizationPass[WeightOnlyConfig]):
    name = "torchao_weight_only"
    needs_calibration = False  # no activation ranges to fit
    Config = WeightOnlyConfig
    description = "int8/int4 weight-only Linear layers (torchao quantize_), bf16 activations"
    requires = ("torchao",)
    devices = ("cpu", "cuda")
    # torchao tensor-subclass weights: the int8 kernel exists only as Inductor's pattern, and
    # the int4 CPU kernel ran faster compiled than eager (measured on a 384x1536 Linear stack,
    # batch 1 and 8), so what it produces goes to a Dynamo/torch.export-based runtime.
    produces = "torch-quantized"
    layer_types = LINEAR

    def scheme(self) -> Scheme:
        cfg = self.config
        return Scheme(weight_bits=cfg.bits, weight_group=cfg.group_size, activations="none")

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        origin = "Linear weights in {} bits, activations in bf16 (weight-only)"
        fewer_bytes = Claim(0.5, "int8 weights quarter the bytes of weight-streaming GEMMs")
        return [
            Variant(WeightOnlyConfig(bits=8), "torchao-int8-weight-only", origin.format(8), compute_dtype="int8",
                    addresses={"memory": fewer_bytes}),
            Variant(WeightOnlyConfig(bits=4, group_size=128), "torchao-int4-weight-only",
                    origin.format(4) + ", groups of 128", compute_dtype="int4"),
        ]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        cfg = self.config
        check_keep_float(model.module, cfg.keep_float, self.layer_types)
        device = device_type(ctx.device)
        ao_config, method, kernel = _torchao_config(cfg, device, ctx.device)

        def skip_reason(layer: torch.nn.Module) -> str | None:
            out_features, in_features = layer.weight.shape[-2:]
            if cfg.bits == 4 and in_features % cfg.group_size:
                return f"in_features {in_features} is not a multiple of group_size {cfg.group_size}"
            if cfg.bits == 4 and device == "cpu" and out_features % CPU_INT4_N_MULTIPLE:
                return f"out_features {out_features} is not a multiple of {CPU_INT4_N_MULTIPLE} (cpu int4 packing)"
            return None

        start = time.perf_counter()
        quantized, selected, skipped = quantize_layers(
            model.module, cfg.keep_float, ao_config, skip_reason, ctx.device,
            torch.bfloat16 if cfg.activation_dtype == "bfloat16" else None,
        )
        quant_s = time.perf_counter() - start
        notes = {"quantization": f"torchao-int{cfg.bits}-weight-only", "method": method,
                 "bits": cfg.bits, "group_size": cfg.group_size, "activation_dtype": cfg.activation_dtype,
                 "kernel": kernel, "quantized_layers": len(selected), "skipped_layers": skipped,
                 "kept_float": list(cfg.keep_float), "quant_s": round(quant_s, 3)}
        return Artifact(self.produces, quantized, compute_dtype=f"int{cfg.bits}", notes=notes)


def device_type(device: str) -> str:
    kind = device.split(":", 1)[0]
    if kind not in ("cpu", "cuda"):
        raise Unsupported(f"torchao weight-only and fp8 passes run on cpu or cuda, not {device}")
    return kind


def _torchao_config(cfg: WeightOnlyConfig, device: str, full_device: str) -> tuple[Any, str, str]:
    """(torchao config, method for the notes, the kernel that will run), or Unsupported where
    this device has no kernel for the request. Imports torchao (seconds) only here."""
    require("torchao")
    bf16 = cfg.activation_dtype == "bfloat16"
    # set_inductor_config=False: torchao's setter changes Inductor's global config for the rest of
    # the process; the runtime's own config decides how this model compiles.
    if cfg.bits == 8:
        from torchao.quantization import Int8WeightOnlyConfig

        kernel = ("aten._weight_int8pack_mm through Inductor's weight-only pattern (eager runs "
                  "dequantize-then-matmul)") if bf16 else DEQUANT_FALLBACK
        return Int8WeightOnlyConfig(set_inductor_config=False), "Int8WeightOnlyConfig (per output channel)", kernel
    if device == "cpu":
        if not bf16:
            raise Unsupported("torchao int4 weight-only on cpu: aten._weight_int4pack_mm_for_cpu is fast for bfloat16 "
                              "activations only (float32 ran 10-30x slower than fp32 eager on torch 2.13)",
                              hint="use activation_dtype='bfloat16'")
        if cfg.group_size not in CPU_INT4_GROUPS:
            raise Unsupported(f"torchao int4 weight-only has no cpu kernel for group_size {cfg.group_size} in torchao 0.18: "
                              f"Int4OpaqueTensor (aten._weight_int4pack_mm_for_cpu) takes {', '.join(map(str, CPU_INT4_GROUPS))}")
        if not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):
            raise Unsupported(f"torchao int4 weight-only has no kernel for cpu in torch {torch.__version__}: "
                              "aten._weight_int4pack_mm_for_cpu is missing")
        try:
            from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
        except ImportError as exc:
            raise Unsupported(f"torchao int4 weight-only has no kernel for cpu in this torchao: the cpu packing "
                              f"(prototype Int4OpaqueTensor) is missing ({exc})") from exc
        return (PrototypeInt4WeightOnlyConfig(group_size=cfg.group_size, set_inductor_config=False),
                f"PrototypeInt4WeightOnlyConfig (Int4OpaqueTensor, groups of {cfg.group_size}; torchao prototype API)",
                "aten._weight_int4pack_mm_for_cpu")
    if not bf16:
        raise Unsupported("torchao int4 weight-only on cuda: the tinygemm kernel (aten._weight_int4pack_mm) takes bfloat16 only",
                          hint="use activation_dtype='bfloat16'")
    capability = torch.cuda.get_device_capability(full_device)
    if capability < (8, 0):
        raise Unsupported(f"torchao int4 weight-only on cuda needs compute capability 8.0 or higher (tinygemm); "
                          f"{torch.cuda.get_device_name(full_device)} is {capability[0]}.{capability[1]}")
    from torchao.quantization import Int4WeightOnlyConfig

    return (Int4WeightOnlyConfig(group_size=cfg.group_size, int4_packing_format="tile_packed_to_4d", set_inductor_config=False),
            f"Int4WeightOnlyConfig (tile_packed_to_4d, groups of {cfg.group_size})", "aten._weight_int4pack_mm (tinygemm)")


def quantize_layers(
    module: torch.nn.Module,
    keep_float: tuple[str, ...],
    ao_config: Any,
    skip_reason: Callable[[torch.nn.Module], str | None],
    device: str,
    compute_dtype: torch.dtype | None,
) -> tuple[torch.nn.Module, list[str], dict[str, str]]:
    """A deep copy of `module` (the caller's model is the fp32 reference) with torchao's
    `ao_config` applied to every Linear layer except those kept in float or skipped.
    `compute_dtype`: cast those layers (weights, and their inputs/outputs around the call) to it
    before quantizing. Returns (module, quantized layer names, skipped layer -> why)."""
    from torchao.quantization import quantize_

    candidates = {name: m for name, m in layers(module, LINEAR).items() if name not in keep_float}
    skipped = {name: why for name, m in candidates.items() if (why := skip_reason(m))}
    selected = [name for name in candidates if name not in skipped]
    if not selected:
        detail = "; ".join(f"{n}: {why}" for n, why in skipped.items())
        raise Unsupported("no Linear layer left to quantize" + (f" ({detail})" if detail else "")
                          + (f", {len(keep_float)} kept in float" if keep_float else ""))
    copied = copy.deepcopy(module)
    if device != "cpu":
        copied = copied.to(device)  # CUDA packings (tinygemm, fp8) are made on the GPU
    user = unwrap(copied)
    chosen = set(selected)
    if compute_dtype is not None:
        by_name = dict(user.named_modules())
        for name in selected:
            cast_layer(by_name[name], compute_dtype)
    try:
        quantize_(user, ao_config, filter_fn=lambda m, fqn: fqn in chosen)
    except (InputError, Unsupported):
        raise
    except Exception as exc:  # torchao asserts on what its kernels cannot take
        raise Unsupported(f"torchao {type(ao_config).__name__}: {type(exc).__name__}: {_first_line(exc)}") from exc
    by_name = dict(user.named_modules())
    unchanged = [n for n in selected if type(by_name[n].weight) in (torch.Tensor, torch.nn.Parameter)]
    for name in unchanged:  # torchao skipped it silently (its own shape rule): say so
        skipped[name] = "torchao left it unquantized (shape not supported by the kernel)"
    selected = [n for n in selected if n not in unchanged]
    if not selected:
        raise Unsupported(f"torchao {type(ao_config).__name__} quantized no Linear layer "
                          f"({'; '.join(f'{n}: {w}' for n, w in skipped.items())})")
    return copied, selected, skipped


class _CastArgs:
    """Forward pre-hook: floating-point inputs to `dtype` (a class, so the module deep-copies)."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype

    def __call__(self, module: torch.nn.Module, args: tuple) -> tuple:
        return tuple(a.to(self.dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)


class _CastOutput:
    """Forward hook: the output back to the layer's original dtype."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype

    def __call__(self, module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output.to(self.dtype)


def cast_layer(layer: torch.nn.Module, dtype: torch.dtype) -> None:
    """Make `layer` compute in `dtype` while its callers still see its original dtype."""
    original = layer.weight.dtype
    if original == dtype:
        return
    layer.to(dtype)
    layer.register_forward_pre_hook(_CastArgs(dtype))
    layer.register_forward_hook(_CastOutput(original))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return next((line.strip() for line in text.splitlines() if line.strip()), text)
