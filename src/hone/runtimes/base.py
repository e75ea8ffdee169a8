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
    # Set by a runtime that computes below its artifact's precision (OpenVINO bf16, TensorRT
    # fp16): validation then uses that precision's tolerance. None: the artifact's.
    compute_dtype: str | None = None

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
    """Runs a torch module (eager, compiled or scripted) as is.

    Saved as a torch.export program of the module before compilation (`model.pt2`): a
    torch.compile product has no saved form, so loading compiles the program again."""

    def __init__(
        self,
        module: torch.nn.Module,
        device: str = "cpu",
        info: dict[str, Any] | None = None,
        example_inputs: tuple[torch.Tensor, ...] | None = None,
    ):
        self.module = module
        self.device = device
        self._info = info or {}
        self.example_inputs = example_inputs  # what torch.export traces when saving

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return self.module(*inputs)

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def save(self, directory: Path) -> list[str]:
        if self.example_inputs is None:
            raise Unsupported("this runner was built without example inputs to export with")
        module = getattr(self.module, "_orig_mod", self.module)  # before torch.compile wrapped it
        try:
            exported = torch.export.export(module, self.example_inputs)
        except Exception as exc:  # noqa: BLE001 - any export failure means "cannot save this"
            raise Unsupported(f"torch.export could not capture the model to save it: {type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from exc
        torch.export.save(exported, directory / "model.pt2")
        return ["model.pt2"]


class _ExportedModule(torch.nn.Module):
    """A loaded torch.export program as a plain module: the program's own module refuses
    `.eval()` and `.to()`, which builds call; it is in eval form already and is moved to its
    device at load. Held outside the child modules so those calls pass it by."""

    def __init__(self, program: torch.nn.Module):
        super().__init__()
        object.__setattr__(self, "program", program)

    def forward(self, *inputs: torch.Tensor) -> Any:
        return self.program(*inputs)


def load_exported_module(directory: Path, files: list[str], device: str = "cpu") -> torch.nn.Module:
    """The module a ModuleRunner saved (a torch.export program: no pickle)."""
    program = torch.export.load(directory / files[0])
    if device != "cpu":
        from torch.export.passes import move_to_device_pass

        program = move_to_device_pass(program, device)
    return _ExportedModule(program.module())


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
