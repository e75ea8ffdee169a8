"""Eager PyTorch: the reference candidate, and the runtime for torch-level passes (autocast,
channels_last) that need no compiler."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hone.plugin import Artifact, BuildContext
from hone.runtimes.base import ModuleRunner, Runner, Runtime, load_exported_module
from hone.search.recipe import Recipe, Step

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload


class Eager(Runtime):
    name = "eager"
    description = "PyTorch eager execution (the fp32 reference)"
    devices = ("cpu", "cuda")

    @classmethod
    def propose(cls, workload: "Workload", hw: "Hardware", device: str) -> list[Recipe]:
        return [Recipe("eager", (), Step(cls.name, cls.Config()), origin="reference: eager fp32")]

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        module = model.module.to(ctx.device).eval()
        return ModuleRunner(module, ctx.device, {"compute_dtype": model.compute_dtype, **model.notes}, ctx.example_inputs)

    def load(self, directory: Path, files: list[str], ctx: BuildContext) -> Runner:
        return self.build_impl(Artifact("torch", load_exported_module(directory, files, ctx.device)), ctx)
