"""Dynamic int8: Linear/LSTM weights stored in int8, activation scales computed per call.

Needs no calibration data and no compiler, so it is the int8 candidate that works everywhere
torch does; the win is largest where weights dominate (small batches, big Linear layers)."""

from __future__ import annotations

import copy
import dataclasses
import warnings
from typing import TYPE_CHECKING

import torch

from hone.errors import InputError, Unsupported
from hone.passes.quantize import QuantConfig, QuantizationPass, Scheme, check_keep_float, path_in
from hone.plugin import Artifact, BuildContext, Variant

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

MODULE_TYPES = ("Linear", "LSTM")
ENGINES = ("x86", "onednn", "fbgemm")
# Where quantize_dynamic's replacement modules live: counting them says what really happened.
QUANTIZED_DYNAMIC_PREFIX = "torch.ao.nn.quantized.dynamic"


def _has_module_types(module: torch.nn.Module, names: tuple[str, ...]) -> bool:
    types = tuple(getattr(torch.nn, name) for name in names)
    return any(isinstance(m, types) for m in module.modules())


@dataclasses.dataclass(frozen=True)
class DynamicInt8Config(QuantConfig):
    modules: tuple[str, ...] = MODULE_TYPES
    # Per-channel weight scales keep accuracy when output channels differ in range; the
    # x86/fbgemm kernels take them at no extra cost.
    per_channel: bool = True
    engine: str = "x86"

    def __post_init__(self) -> None:
        # from_dict gives lists (JSON has no tuples); a frozen field must stay hashable.
        object.__setattr__(self, "modules", tuple(self.modules))
        super().__post_init__()

    def validate(self) -> None:
        unknown = [m for m in self.modules if m not in MODULE_TYPES]
        if not self.modules or unknown:
            raise InputError(f"dynamic int8 modules must be a non-empty subset of {', '.join(MODULE_TYPES)}, got {list(self.modules)}")
        if self.engine not in ENGINES:
            raise InputError(f"quantized engine {self.engine!r} is not one of {', '.join(ENGINES)}")


class DynamicInt8(QuantizationPass[DynamicInt8Config]):
    name = "dynamic_int8"
    Config = DynamicInt8Config
    description = "int8 weights with dynamic activation scales for Linear/LSTM (torch quantize_dynamic)"
    devices = ("cpu",)  # the quantized dynamic kernels are CPU-only
    # Quantized eager modules (torch.ao.nn.quantized.dynamic): eager and TorchScript run them,
    # Dynamo and torch.export do not.
    produces = "torch-eager-only"
    layer_types = MODULE_TYPES
    needs_calibration = False  # activation ranges come from each batch

    def scheme(self) -> Scheme:
        cfg = self.config
        # torch's DynamicQuantizedLinear always asks fbgemm (the x86 engine's kernel) for
        # 7-bit activations (reduce_range=True): saturation-free on CPUs without VNNI too, so
        # nothing here depends on the probe.
        bits = 8 if cfg.engine == "onednn" else 7
        return Scheme(weight_group=0 if cfg.per_channel else -1, activations="dynamic", activation_bits=bits)

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if device != "cpu":
            return []
        if workload is not None and not _has_module_types(workload.module, MODULE_TYPES):
            # Nothing it would quantize (GPT-2's projections are transformers' Conv1D, a CNN has
            # no Linear worth it): the worker would only find that out after loading the model.
            return []
        origin = "int8 weights, dynamic activation scales (Linear/LSTM)"
        return [Variant(DynamicInt8Config(), "torch-int8-dynamic", origin, compute_dtype="int8")]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        cfg = self.config
        if cfg.engine not in torch.backends.quantized.supported_engines:
            raise Unsupported(f"quantized engine {cfg.engine!r} is not in this torch build "
                              f"({', '.join(torch.backends.quantized.supported_engines)})")
        # Process-global, but the worker is a fresh process per candidate; the kernels read it
        # at call time, so it must stay set after this pass returns.
        check_keep_float(model.module, cfg.keep_float, cfg.modules)
        torch.backends.quantized.engine = cfg.engine
        with warnings.catch_warnings():
            # torch.ao eager quantization is deprecated in favour of torchao, but it is the one
            # dynamic int8 path that needs no extra package; the warning says nothing actionable.
            warnings.simplefilter("ignore", DeprecationWarning)
            from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

            qconfig = per_channel_dynamic_qconfig if cfg.per_channel else default_dynamic_qconfig
            spec: dict = {getattr(torch.nn, m): qconfig for m in cfg.modules}
            # A name entry overrides the type entry: kept layers get no qconfig.
            spec.update({path_in(model.module, name): None for name in cfg.keep_float})
            # deepcopy: quantize_dynamic swaps submodules, and the caller's model is the reference.
            quantized = quantize_dynamic(copy.deepcopy(model.module), spec, dtype=torch.qint8)
        count = sum(
            1
            for m in quantized.modules()
            if type(m).__module__.startswith(QUANTIZED_DYNAMIC_PREFIX) and type(m).__name__ in cfg.modules
        )
        if count == 0:
            raise Unsupported("no Linear or LSTM modules to quantize dynamically")
        notes = {"quantization": "int8-dynamic", "engine": cfg.engine,
                 "per_channel": cfg.per_channel, "quantized_modules": count, "kept_float": list(cfg.keep_float)}
        return Artifact(self.produces, quantized, compute_dtype="int8", notes=notes)
