"""Base classes of every runtime and of the runners they build."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from hone.errors import Unsupported
from hone.plugin import Artifact, BuildContext, Plugin


class Runner:
    """A built candidate: call it with the inputs in input-name order, get a tuple of tensors.

    Template method (Polygraphy's BaseRunner): `__call__` is the same for every runtime;
    subclasses write `infer_impl`. `info()` reports what really ran (providers, precision),
    read back from the backend, never assumed from the request.
    """

    device: str = "cpu"

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.inference_mode():
            outputs = self.infer_impl(inputs)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return tuple(outputs)

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {}

    def save(self, directory: Path) -> list[str]:
        """Write the deployable product (a .pt2 package, an IR, an engine, ...) into `directory`
        and return the names of the files written. `Runtime.load` reads them back."""
        raise Unsupported(f"{type(self).__name__} has no saved form")


class ModuleRunner(Runner):
    """Runs a torch module (eager, compiled or scripted) as is."""

    def __init__(self, module: torch.nn.Module, device: str = "cpu", info: dict[str, Any] | None = None):
        self.module = module
        self.device = device
        self._info = info or {}

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return self.module(*inputs)

    def info(self) -> dict[str, Any]:
        return dict(self._info)


class Runtime(Plugin):
    """Builds a Runner from an Artifact of `input_format`."""

    input_format: ClassVar[str] = "torch"

    def build(self, model: Artifact, ctx: BuildContext) -> Runner:
        if model.format != self.input_format:
            raise TypeError(f"runtime {self.name} takes a {self.input_format} model, got {model.format}")
        return self.build_impl(model, ctx)

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        raise NotImplementedError

    def load(self, directory: Path, files: list[str], ctx: BuildContext) -> Runner:
        """A Runner from what `Runner.save` wrote into `directory` (`files`, as it returned them),
        configured like the build (`self.config`). `ctx.example_inputs` may be empty."""
        raise Unsupported(f"runtime {self.name} cannot load a saved artifact")
