"""torch.compile with the Inductor backend. The build compiles (on the example inputs), so
build time carries the compile cost and the first timed call is a steady-state one."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from hone.config import Config
from hone.errors import InputError
from hone.plugin import Artifact, BuildContext
from hone.runtimes.base import ModuleRunner, Runner, Runtime
from hone.search.recipe import Recipe, Step

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclasses.dataclass(frozen=True)
class InductorConfig(Config):
    mode: str = "default"
    # Freezing folds weights into the graph as constants, which lets Inductor pre-pack them for
    # oneDNN/MKL: the main CPU win for inference. Needs no_grad/inference_mode (the Runner has it).
    freezing: bool = True
    fullgraph: bool = False
    dynamic: bool = False

    def validate(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"inductor mode {self.mode!r} is not one of {', '.join(MODES)}")


class Inductor(Runtime):
    name = "inductor"
    Config = InductorConfig
    description = "torch.compile with the Inductor backend"
    devices = ("cpu", "cuda")

    @classmethod
    def unavailable_here(cls, hw: "Hardware", device: str) -> str | None:
        if device == "cpu" and not _has_cxx_compiler():
            return "Inductor's CPU backend needs a C++ compiler (g++ or clang++) on PATH"
        return None

    @classmethod
    def propose(cls, workload: "Workload", hw: "Hardware", device: str) -> list[Recipe]:
        return [Recipe("inductor", (), Step(cls.name, InductorConfig()), "compile and fuse, weights frozen")]

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        from torch._inductor.utils import run_and_get_code

        cfg: InductorConfig = self.config  # type: ignore[assignment]
        module = model.module.to(ctx.device).eval()
        compiled = torch.compile(
            module,
            backend="inductor",
            mode=None if cfg.mode == "default" else cfg.mode,
            fullgraph=cfg.fullgraph,
            dynamic=cfg.dynamic,
        )
        # Inductor reads `freezing` from its global config while the graph compiles; passed as
        # torch.compile(options=...) it arrives too late and is silently ignored (the weights
        # stay graph inputs). So compile here, on the example inputs, inside a scoped patch that
        # leaves the caller's config as it was, and read back from the generated code whether
        # the weights really were folded in.
        with torch._inductor.config.patch(freezing=cfg.freezing), torch.inference_mode():
            _, code = run_and_get_code(compiled, *ctx.example_inputs)
        frozen = "_frozen_param" in "\n".join(code)
        info = {**model.notes, "backend": "inductor", **dataclasses.asdict(cfg), "weights_frozen": frozen}
        return ModuleRunner(compiled, ctx.device, info)


def _has_cxx_compiler() -> bool:
    import shutil

    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))
