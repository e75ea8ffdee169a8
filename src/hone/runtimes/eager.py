"""Eager PyTorch: the reference candidate, and the runtime for torch-level passes (autocast,
channels_last, dynamic int8) that need no compiler."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hone.config import NoConfig
from hone.plugin import Artifact, BuildContext, Variant
from hone.runtimes.base import ModuleRunner, Runner, Runtime, load_exported_module

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload


class Eager(Runtime[NoConfig]):
    name = "eager"
    description = "PyTorch eager execution (the fp32 reference)"
    devices = ("cpu", "cuda")
    # "torchscript": a loaded TorchScript archive, called as is (the TorchScript interpreter
    # runs it): the baseline of a workload that is one.
    consumes = ("torch", "torch-eager-only", "torchscript")
    default_for = ("torch", "torch-eager-only", "torchscript")
    accepts_dtypes = ("*",)
    keeps = ("channels_last",)

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if fmt == "torchscript":
            return [Variant(NoConfig(), "eager", "reference: the TorchScript module as loaded, not frozen", cost=1.0)]
        return [Variant(NoConfig(), "eager", "reference: eager fp32", cost=1.0)]

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        module = model.module.to(ctx.device).eval()
        return ModuleRunner(module, ctx.device, {"compute_dtype": model.compute_dtype}, ctx.example_inputs)

    def load(self, directory: Path, files: list[str], ctx: BuildContext) -> Runner:
        return self.build_impl(Artifact("torch", load_exported_module(directory, files, ctx.device)), ctx)
