"""torch.compile with the Inductor backend. The build compiles (on the example inputs), so
build time carries the compile cost and the first timed call is a steady-state one.

Candidates: `inductor` (default mode, weights frozen) everywhere; `inductor-unfrozen`
(torch.compile's own defaults: weights stay graph inputs; on a small model at batch 1 the frozen
graph's pre-packed oneDNN kernels cost more per call than they save: digits-cnn ran 0.46 ms
frozen against 0.17 ms unfrozen at bs1, and the other way round at bs64); `inductor-max-autotune`
(GEMM templates benchmarked at compile time: minutes, so it is costed for the time budget);
`inductor-dynamic` (one graph for every batch size, no recompile when the shape changes); on
CUDA `inductor-reduce-overhead` (CUDA graphs) and `inductor-max-autotune-no-cudagraphs`. Each
build reports its graph breaks (count and reasons) and its compile time; the report turns the
compile time into the number of calls after which compiling has paid off.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from hone.config import Config
from hone.errors import InputError, Unsupported
from hone.plugin import Artifact, BuildContext, Claim, Variant
from hone.runtimes._dynamo import CompiledRunner, compile_now, fullgraph_refusal, graph_breaks
from hone.runtimes.base import Runner, Runtime, load_exported_module

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


class Inductor(Runtime[InductorConfig]):
    name = "inductor"
    Config = InductorConfig
    description = "torch.compile with the Inductor backend"
    devices = ("cpu", "cuda")
    # Quantized graphs (pt2e's quantize/dequantize pairs) and torchao's tensor-subclass weights
    # lower through Dynamo, which is why their recipes run here unless a stack names another.
    consumes = ("torch", "torch-quantized")
    default_for = ("torch-quantized",)
    accepts_dtypes = ("*",)
    keeps = ("channels_last",)

    @classmethod
    def unavailable_here(cls, hw: "Hardware", device: str) -> str | None:
        if device == "cpu" and not _has_cxx_compiler():
            return "Inductor's CPU backend needs a C++ compiler (g++ or clang++) on PATH"
        return None

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        cuda = device.startswith("cuda")
        # Freezing buys CPU weight prepacking (oneDNN/MKL); pt2e's int8 weights can be prepacked
        # only as frozen constants. On CUDA, a quantized model's weights are tensor subclasses
        # (torchao's int8/int4/fp8) that need nothing folded, and the same kernels run either
        # way: compiled without freezing.
        freezing = not (cuda and fmt == "torch-quantized")

        def variant(tag: str, origin: str, cost: float, addresses: dict[str, Claim] | None = None, *,
                    mode: str = "default", dynamic: bool = False, stack: bool = False, frozen: bool = True) -> Variant:
            config = InductorConfig(mode=mode, freezing=freezing and frozen, dynamic=dynamic)
            return Variant(config, tag, origin, cost=cost, addresses=addresses or {}, stack=stack)

        offered = [
            variant("inductor", "compile and fuse, weights frozen" if freezing else "compile and fuse", 2.5, {
                "overhead": Claim(0.9, "fusion cuts the number of ops dispatched per call"),
                "memory": Claim(1.0, "fusion keeps intermediates in cache instead of writing them out"),
                "compute": Claim(0.5, "freezing pre-packs weights for the fastest GEMM kernels"),
            }, stack=True),
            variant("inductor-dynamic", "one compiled graph for every batch size (no recompiles)", 2.5, dynamic=True),
        ]
        if freezing and fmt == "torch":  # quantized weights want freezing; else `inductor` is unfrozen already
            offered.append(variant("inductor-unfrozen", "torch.compile's defaults: compile and fuse, weights left as inputs", 2.5, {
                "overhead": Claim(0.9, "fusion cuts the number of ops dispatched per call, with no pre-packed kernels' per-call cost"),
                "memory": Claim(1.0, "fusion keeps intermediates in cache instead of writing them out"),
            }, frozen=False))
        offered += [
            variant("inductor-max-autotune", "benchmark GEMM/conv templates at compile time", 8.0,
                    {"compute": Claim(0.35, "GEMM templates benchmarked for these shapes")}, mode="max-autotune"),
        ]
        if cuda:
            offered += [
                variant("inductor-reduce-overhead", "CUDA graphs: the forward replayed as one launch", 3.0,
                        {"overhead": Claim(1.0, "CUDA graphs replay the whole forward as one launch")},
                        mode="reduce-overhead"),
                variant("inductor-max-autotune-no-cudagraphs", "autotuned kernels without CUDA graphs", 8.0,
                        mode="max-autotune-no-cudagraphs"),
            ]
        return offered

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        from torch._inductor.utils import run_and_get_code

        cfg = self.config
        module = model.module.to(ctx.device).eval()
        breaks = graph_breaks(module, ctx.example_inputs)
        if cfg.fullgraph and fullgraph_refusal(breaks):
            raise Unsupported(fullgraph_refusal(breaks))
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
        code: list[str] = []
        with torch._inductor.config.patch(freezing=cfg.freezing):
            compile_s = compile_now(lambda *xs: code.extend(run_and_get_code(compiled, *xs)[1]), ctx.example_inputs)
        frozen = "_frozen_param" in "\n".join(code)
        info = {
            "backend": "inductor", **dataclasses.asdict(cfg), "weights_frozen": frozen,
            "compile_s": round(compile_s, 3), **breaks,
        }
        return CompiledRunner(compiled, ctx.device, info, ctx.example_inputs, {"freezing": cfg.freezing})

    def load(self, directory: Path, files: list[str], ctx: BuildContext) -> Runner:
        return self.build_impl(Artifact("torch", load_exported_module(directory, files, ctx.device)), ctx)


def _has_cxx_compiler() -> bool:
    import shutil

    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))
