"""What passes and runtimes share: a name, a Config, declared metadata, an availability check.

Metadata is static (class attributes) so the planner and `hone doctor` can read it without
importing any backend. `available()` must not import the backend either: it uses find_spec.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from hone._optional import missing_reason
from hone import config as _config

if TYPE_CHECKING:
    import torch

    from hone.hardware import Hardware
    from hone.models.workload import TrainSet, Workload
    from hone.search.recipe import Recipe


class Plugin:
    name: ClassVar[str] = ""  # registry key, snake_case
    Config: ClassVar[type[_config.Config]] = _config.NoConfig
    description: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()  # importable package names (find_spec-checked)
    devices: ClassVar[tuple[str, ...]] = ("cpu",)

    def __init__(self, config: _config.Config | None = None):
        config = config if config is not None else self.Config()
        if not isinstance(config, self.Config):
            raise TypeError(f"{self.name} takes a {self.Config.__name__}, not {type(config).__name__}")
        self.config = config

    @classmethod
    def available(cls, hw: "Hardware", device: str = "cpu") -> str | None:
        """None when this plugin can run on `device` of `hw`, else the reason it cannot.
        Checks the declared devices and packages, then the plugin's own `unavailable_here`."""
        if device.split(":")[0] not in cls.devices:  # "cuda:1" is a cuda device
            return f"runs on {', '.join(cls.devices)}, not {device}"
        return missing_reason(*cls.requires) or cls.unavailable_here(hw, device)

    @classmethod
    def unavailable_here(cls, hw: "Hardware", device: str) -> str | None:
        """A plugin's own capability check (bf16 units, a compiler, ...); None when it can run."""
        return None

    @classmethod
    def propose(cls, workload: "Workload", hw: "Hardware", device: str) -> list["Recipe"]:
        """The recipes this plugin anchors for this workload (the planner asks every plugin)."""
        return []


@dataclasses.dataclass
class Artifact:
    """A model between steps of a recipe: a torch module (FlatIO I/O) or an ONNX file."""

    format: str  # "torch" | "onnx"
    module: "torch.nn.Module | None" = None
    path: Path | None = None
    compute_dtype: str = "float32"  # the precision it computes in: decides the tolerance
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)  # what was done, for the store


@dataclasses.dataclass
class BuildContext:
    """Everything a pass or runtime may need besides the model; no global state."""

    example_inputs: "tuple[torch.Tensor, ...]"
    input_names: list[str]
    output_names: list[str]
    workdir: Path
    threads: int
    device: str = "cpu"
    # Calibration samples (inputs in name order, stacked on dim 0) for quantization passes.
    calibration: "tuple[torch.Tensor, ...] | None" = None
    # Data and loss for quantization-aware training, when the workload has them.
    train: "TrainSet | None" = None
    # Each output's batch axis, in output order (None: no batch axis); empty: unknown, dim 0.
    output_batch_axes: "list[int | None]" = dataclasses.field(default_factory=list)

    def calibration_batches(self) -> "list[tuple[torch.Tensor, ...]]":
        """The calibration samples in batches of the example inputs' batch size: an exported or
        compiled model may accept only that shape. The last batch is padded by repeating its
        final sample (a duplicate moves no min/max and barely a histogram)."""
        import torch

        if not self.calibration:
            return [self.example_inputs]
        batch = int(self.example_inputs[0].shape[0])
        n = int(self.calibration[0].shape[0])
        batches = []
        for start in range(0, n, batch):
            chunk = [t[start : start + batch] for t in self.calibration]
            pad = batch - int(chunk[0].shape[0])
            if pad:
                chunk = [torch.cat([t, t[-1:].expand(pad, *t.shape[1:])]) for t in chunk]
            batches.append(tuple(chunk))
        return batches
