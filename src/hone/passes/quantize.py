"""What every quantization pass shares, so the accuracy-driven fallback works on all of them.

A *layer* is a torch module with weights (Linear, Conv, ...) named as in the user's model's
`named_modules()` (the FlatIO wrapper's "module." prefix removed). Every quantization pass,
whatever its backend, quantizes layers and can leave named ones in float (`keep_float`):
- PyTorch passes skip those modules;
- ONNX Runtime passes skip the nodes that consume those modules' weights;
- OpenVINO passes put those modules' nodes in NNCF's ignored scope.
So the fallback ranks layers once, on the torch model, and retries any backend with the worst
ones kept in float. `Scheme` says how a pass quantizes, so the ranking simulates that scheme.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

import torch

from hone.config import Config
from hone.errors import InputError
from hone.passes.base import Pass

FLATIO_PREFIX = "module."  # FlatIO keeps the user's model as its `module` attribute
WEIGHT_LAYER_TYPES = ("Linear", "Conv1d", "Conv2d", "Conv3d")
ACTIVATION_MODES = ("static", "dynamic", "none")
# Said in the origin of int8 recipes that quantize to 7 bits on a CPU without VNNI
# (Hardware.int8_dot_saturates).
SATURATION_NOTE = "; 7-bit, since without VNNI int8 dot products saturate in 16 bits"


@dataclasses.dataclass(frozen=True)
class Scheme:
    """How a pass quantizes a layer, for the sensitivity simulation (not for the pass itself)."""

    weight_bits: int = 8
    # 0: one scale per output channel; -1: one scale per tensor; n > 0: groups of n inputs.
    weight_group: int = 0
    activations: str = "static"  # "static": ranges from calibration; "dynamic": per batch; "none"
    activation_bits: int = 8
    activation_symmetric: bool = False
    float_format: str = ""  # "e4m3" for fp8: rounding to a float grid, not an integer one

    def __post_init__(self) -> None:
        if self.activations not in ACTIVATION_MODES:
            raise InputError(f"activations must be one of {', '.join(ACTIVATION_MODES)}, not {self.activations!r}")


@dataclasses.dataclass(frozen=True)
class QuantConfig(Config):
    """Base of every quantization pass's config.

    keep_float: layers (torch module names in the user's model) left in float. The
    accuracy-driven fallback sets it; a user may set it too. Saved with the recipe, so a
    result says exactly which layers were kept.
    """

    keep_float: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # from_dict gives lists (JSON has no tuples); a frozen field must stay hashable.
        object.__setattr__(self, "keep_float", tuple(self.keep_float))
        super().__post_init__()


QC = TypeVar("QC", bound=QuantConfig)


class QuantizationPass(Pass[QC]):
    """A pass whose output computes in lower precision; its Config is a QuantConfig:
    `class Pt2eInt8(QuantizationPass[Pt2eInt8Config])`."""

    Config: ClassVar[type] = QuantConfig
    stage: ClassVar[str] = "quantize"
    # Torch module class names this pass quantizes (the layers sensitivity ranks).
    layer_types: ClassVar[tuple[str, ...]] = WEIGHT_LAYER_TYPES
    # Whether it fits activation ranges to calibration samples (the no-calibration-set warning
    # names only these); weight-only and dynamic passes need none.
    needs_calibration: ClassVar[bool] = True

    def scheme(self) -> Scheme:
        """How this pass, with its config, quantizes a layer. Override when not int8 static."""
        return Scheme()


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The user's model inside a FlatIO wrapper (what passes receive), or the module itself."""
    from hone.models.workload import FlatIO

    return module.module if isinstance(module, FlatIO) else module


def path_in(module: torch.nn.Module, layer: str) -> str:
    """Where `layer` (named in the user's model) sits in `module`, which may be the FlatIO
    wrapper passes receive: the name to give APIs that walk `module.named_modules()`."""
    from hone.models.workload import FlatIO

    return FLATIO_PREFIX + layer if isinstance(module, FlatIO) else layer


def layers(module: torch.nn.Module, layer_types: tuple[str, ...] = WEIGHT_LAYER_TYPES) -> dict[str, torch.nn.Module]:
    """Layer name -> module for every module of `layer_types`, named in the user's model."""
    return {name: m for name, m in unwrap(module).named_modules() if type(m).__name__ in layer_types and name}


def layer_of_parameter(parameter_name: str) -> str:
    """The layer a parameter (or an exported initializer named after it) belongs to:
    "module.encoder.layer.0.query.weight" -> "encoder.layer.0.query"."""
    name = parameter_name.removeprefix(FLATIO_PREFIX)
    return name.rsplit(".", 1)[0] if "." in name else name


FOLD_TOLERANCE = 1e-3  # relative residual of a weight row against a scaled layer row


def match_folded_weights(weights: dict[str, Any], module: torch.nn.Module | None,
                         layer_types: tuple[str, ...] = WEIGHT_LAYER_TYPES) -> dict[str, str]:
    """Graph node -> layer, for constant weights that carry no layer's name, matched by value.

    Converters fold a BatchNorm into the convolution before it (OpenVINO's frontend, the ONNX
    exporter's optimizer) and the folded node takes a new name, or the BatchNorm's: scopes no
    longer say which layer it was. Its weight is still the layer's weight with each output
    channel scaled (gamma / sqrt(var + eps)), so it is found by value: every row proportional
    to the layer's row. `weights`: node -> its weight (array-like, output channels first, or
    transposed for a MatMul's [in, out] weight). Nodes that match no layer are left out."""
    if module is None or not weights:
        return {}
    candidates = {name: m.weight.detach().double() for name, m in layers(module, layer_types).items()
                  if isinstance(getattr(m, "weight", None), torch.Tensor)}
    found: dict[str, str] = {}
    for node, value in weights.items():
        folded = torch.tensor(value, dtype=torch.float64)  # a copy: backends hand out read-only arrays
        best, best_residual = None, FOLD_TOLERANCE
        for layer, weight in candidates.items():
            residual = _scaled_residual(folded, weight)
            if residual is not None and residual < best_residual:
                best, best_residual = layer, residual
        if best is not None:
            found[node] = best
    return found


def _scaled_residual(folded: torch.Tensor, weight: torch.Tensor) -> float | None:
    """Largest relative residual of `folded`'s rows against per-row scaled `weight` rows; None
    when the shapes differ (either orientation of a 2-D weight is tried)."""
    if folded.shape != weight.shape:
        if folded.dim() == 2 and folded.shape == weight.shape[::-1]:
            folded = folded.T
        else:
            return None
    f, w = folded.reshape(folded.shape[0], -1), weight.reshape(weight.shape[0], -1)
    scale = (f * w).sum(1) / (w * w).sum(1).clamp_min(1e-300)
    residual = (f - scale[:, None] * w).norm(dim=1) / f.norm(dim=1).clamp_min(1e-300)
    zero = (f.norm(dim=1) == 0) & (w.norm(dim=1) == 0)
    return float(residual.masked_fill(zero, 0.0).max()) if f.numel() else None


def check_keep_float(module: torch.nn.Module, keep_float: tuple[str, ...], layer_types: tuple[str, ...]) -> None:
    """A name in keep_float that is not a layer is a typo: say so before quantizing anything."""
    require_layers(keep_float, list(layers(module, layer_types)), "/".join(layer_types))


def require_layers(names: tuple[str, ...], known: list[str], kinds: str) -> None:
    """InputError naming the entries of `names` that are not in `known` (the model's layers)."""
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(
            f"keep_float names {unknown} that are not {kinds} layers of this model",
            hint=f"layers are named as in model.named_modules(), e.g. {', '.join(known[:5])}",
        )
