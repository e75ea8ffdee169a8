"""A runtime with a fixed service time per forward, whatever the batch (what a batched
accelerator looks like from outside): serving tests then know each configuration's capacity
without depending on this machine's speed, and `export_served` writes it as an export
directory in this process, in a second.

Registered as a user's plugin would be; server workers import it by path (tests/ is on the
parent's sys.path, which ServerConfig.for_artifact hands them)."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from hone.config import Config
from hone.plugin import Artifact, BuildContext
from hone.registry import RUNTIMES
from hone.runtimes.base import ModuleRunner, Runner, Runtime, load_exported_module
from hone.search.recipe import Recipe, Step


@dataclasses.dataclass(frozen=True)
class ServiceTimeConfig(Config):
    service_s: float = 0.02  # 0: no sleep at all (a sleep(0) yields the core: milliseconds on a busy machine)
    variant: str = ""  # two recipes of the same speed need distinct configs


class _ServiceTimeRunner(ModuleRunner):
    service_s = 0.02

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        if self.service_s > 0:
            time.sleep(self.service_s)  # a sleep takes no core: the capacity is 1 / service_s batches a second
        return super().infer_impl(inputs)


@RUNTIMES.register
class ServiceTimeRuntime(Runtime):
    name = "test_service_time"
    Config = ServiceTimeConfig

    def _runner(self, module: torch.nn.Module, ctx: BuildContext) -> Runner:
        runner = _ServiceTimeRunner(module, ctx.device, {}, ctx.example_inputs)
        runner.service_s = self.config.service_s
        return runner

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        return self._runner(model.module, ctx)

    def load(self, directory, files: list[str], ctx: BuildContext) -> Runner:
        return self._runner(load_exported_module(directory, files, ctx.device), ctx)


def export_served(directory: Path, module: torch.nn.Module, example: dict[str, torch.Tensor],
                  service_s: float = 0.02) -> Path:
    """`module` built on the fixed-service-time runtime and saved as an export directory."""
    from hone import export
    from hone.models.workload import normalize_outputs
    from hone.search.build import source_artifact

    names = list(example)
    inputs = tuple(example.values())
    with torch.inference_mode():
        named = normalize_outputs(module(*inputs))  # hone's output names ("output" for a lone tensor)
    output_names, outputs = list(named), tuple(named.values())
    with tempfile.TemporaryDirectory() as work:
        ctx = BuildContext(inputs, names, output_names, Path(work), threads=1)
        recipe = Recipe("service-time", (), Step(ServiceTimeRuntime.name, ServiceTimeConfig(service_s)), origin="test")
        runner = ServiceTimeRuntime(ServiceTimeConfig(service_s)).build(source_artifact(module, ctx), ctx)
        export.save(runner, recipe, directory, input_names=names, output_names=output_names, example_inputs=inputs,
                    reference=outputs, extra={"batch_axes": {"inputs": 0, "outputs": {n: 0 for n in output_names}}})
    return Path(directory)
