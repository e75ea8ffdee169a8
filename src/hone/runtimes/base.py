"""Base classes of every runtime and of the runners they build."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from hone.errors import Unsupported
from hone.plugin import C, Artifact, BuildContext, Plugin

Shapes = tuple[tuple[int, ...], ...]


def shapes_of(inputs: tuple[torch.Tensor, ...]) -> Shapes:
    return tuple(tuple(t.shape) for t in inputs)


def admits(declared: Sequence[Sequence[Any] | None], inputs: tuple[torch.Tensor, ...], batch_free: bool = False) -> bool:
    """Whether inputs of these declared shapes take `inputs`: as many, same rank, every fixed
    (int) dimension equal; any other entry (a symbol, None) takes any size, and a None shape any
    rank. `batch_free`: dim 0 takes any size too (a runner that recompiles for a new batch)."""
    if len(declared) != len(inputs):
        return False
    for shape, tensor in zip(declared, inputs):
        if shape is None:
            continue
        if len(shape) != tensor.dim():
            return False
        dims = list(zip(shape, tensor.shape))[1 if batch_free else 0:]
        if any(isinstance(d, int) and d != size for d, size in dims):
            return False
    return True


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
    # Set by Runtime.build: the input shapes it was built for, the build's seconds (passes and
    # runtime), and the passes' notes by step name.
    built_for: Shapes = ()
    build_s: float = 0.0
    step_notes: dict[str, Any] = {}

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.inference_mode():
            outputs = self.infer_impl(inputs)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return tuple(outputs)

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """What the runtime really ran (read back from the backend), for the store."""
        return {}

    def report(self) -> dict[str, Any]:
        """What the store keeps of a build: the runtime's info and every pass's notes."""
        return {**self.info(), "steps": dict(self.step_notes)}

    def summary(self) -> list[str]:
        """A few short notes for reports (graph breaks, tuning time, what fell back): reports
        show these and never read a runner's info keys."""
        return []

    def serves(self, inputs: tuple[torch.Tensor, ...]) -> bool:
        """Whether this build runs `inputs` as built (a dynamic batch dimension, a module that
        takes any shape), so the worker need not rebuild for their shapes. By default only the
        shapes it was built for."""
        return shapes_of(inputs) == self.built_for

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

    def serves(self, inputs: tuple[torch.Tensor, ...]) -> bool:
        # A torch module takes any batch; a compiled one recompiles for a new shape on its first
        # call there, which the worker times as that input set's first call. A module that came
        # out of torch.export (a pt2e graph, a loaded program) takes the shapes it was exported
        # with: a symbolic dimension any size, a fixed one only its own.
        graphs = [m for m in _modules(self.module) if isinstance(m, torch.fx.GraphModule)]
        if graphs:
            return _graph_takes(graphs[0], inputs) if _outermost(graphs) == 1 else super().serves(inputs)
        return len(inputs) == len(self.built_for)

    def save(self, directory: Path) -> list[str]:
        """A torch.export program with a symbolic batch (where the model allows one), so the
        saved artifact serves every batch size the build served."""
        from hone.runtimes._export import export_program

        if self.example_inputs is None:
            raise Unsupported("this runner was built without example inputs to export with")
        module = getattr(self.module, "_orig_mod", self.module)  # before torch.compile wrapped it
        try:
            exported, _ = export_program(module, self.example_inputs, dynamic_batch=True)
        except Unsupported as exc:
            raise Unsupported(f"torch.export could not capture the model to save it: {exc.message}") from exc
        torch.export.save(exported, directory / "model.pt2")
        return ["model.pt2"]


def _outermost(graphs: list[torch.fx.GraphModule]) -> int:
    """How many of `graphs` sit inside no other (a graph's control-flow branches are graphs too)."""
    inner = {id(m) for g in graphs for m in g.modules() if m is not g}
    return sum(1 for g in graphs if id(g) not in inner)


def _graph_takes(graph: torch.fx.GraphModule, inputs: tuple[torch.Tensor, ...]) -> bool:
    """Whether an exported graph's inputs (the shapes torch.export recorded on its placeholders)
    admit `inputs`: same rank, every fixed dimension equal; a symbolic one takes any size."""
    values = [n.meta.get("val") for n in graph.graph.nodes if n.op == "placeholder"]
    if any(not isinstance(v, torch.Tensor) for v in values):
        return False
    return admits([tuple(v.shape) for v in values], inputs)  # a SymInt is no int: any size


def _modules(module: Any) -> list[Any]:
    module = getattr(module, "_orig_mod", module)
    inner = getattr(module, "program", None)  # _ExportedModule keeps its program outside the children
    found = list(module.modules()) if isinstance(module, torch.nn.Module) else []
    return found + ([inner] if inner is not None else [])


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


class Runtime(Plugin[C]):
    """Builds a Runner from an Artifact of one of `consumes`.

    Template method: subclasses write `build_impl`; `build` checks the format, times the build,
    hands the passes' notes to the runner, records the shapes it was built for, and turns a
    backend's exception into `Unsupported` with the backend's first line."""

    consumes: ClassVar[tuple[str, ...]] = ("torch",)
    # Formats whose recipes run on this runtime unless a stack names another (its default
    # variant's tag is then left out of the label: "pt2e-int8", not "pt2e-int8+inductor").
    default_for: ClassVar[tuple[str, ...]] = ()

    def build(self, model: Artifact, ctx: BuildContext) -> Runner:
        if model.format not in self.consumes:
            raise TypeError(f"runtime {self.name} takes {' or '.join(self.consumes)}, got {model.format}")
        runner, seconds = self._guarded("build", lambda: self.build_impl(model, ctx))
        runner.built_for = shapes_of(ctx.example_inputs)
        runner.build_s = seconds
        runner.step_notes = dict(model.notes)
        return runner

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        raise NotImplementedError

    @classmethod
    def serving_variants(cls, config: Any, threads: int) -> list[tuple[str, dict[str, Any]]]:
        """This runtime's own settings worth trying when its artifact is served by a process of
        `threads` threads: (tag, fields of `config` to load with). The serving sweep crosses
        them with batching and processes x threads. Only settings that change how it runs,
        never what it computes."""
        return []

    def load(self, directory: Path, files: list[str], ctx: BuildContext) -> Runner:
        """A Runner from what `Runner.save` wrote into `directory` (`files`, as it returned them),
        configured like the build (`self.config`). `ctx.example_inputs` are the saved example
        inputs."""
        raise Unsupported(f"runtime {self.name} cannot load a saved artifact")
