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
from typing import ClassVar

import torch

from hone.config import Config
from hone.errors import InputError
from hone.passes.base import Pass

FLATIO_PREFIX = "module."  # FlatIO keeps the user's model as its `module` attribute
WEIGHT_LAYER_TYPES = ("Linear", "Conv1d", "Conv2d", "Conv3d")
ACTIVATION_MODES = ("static", "dynamic", "none")


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


class QuantizationPass(Pass):
    """A pass whose output computes in lower precision; its Config is a QuantConfig."""

    Config: ClassVar[type[QuantConfig]] = QuantConfig
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
