"""torch.compile with a backend other than Inductor: the ones a package registers with Dynamo
(OpenVINO's `openvino`, torch-tensorrt's `tensorrt`). Inductor has its own runtime
(`runtimes/inductor.py`) with its freezing and modes.

A backend is offered when the package that registers it is installed: found through the
`torch_dynamo_backends` entry points or the known packages below, never by importing it (that
would import the backend in the parent). OpenVINO's backend is pinned to f32 inference like
the `openvino` runtime: its CPU plugin would otherwise run float layers in bf16 on a CPU with
bf16 units. The precision each OpenVINO partition compiled to is read back from its cache.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import torch

from hone._optional import block_usage_telemetry, is_available
from hone.config import Config
from hone.errors import InputError, Unsupported
from hone.plugin import Artifact, BuildContext, Variant
from hone.runtimes._dynamo import CompiledRunner, compile_now, fullgraph_refusal, graph_breaks
from hone.runtimes.base import Runner, Runtime, load_exported_module

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

# backend -> (the package that registers it on import, the devices it compiles for)
KNOWN_BACKENDS = {"openvino": ("openvino", ("cpu",)), "tensorrt": ("torch_tensorrt", ("cuda",))}


def registered_backends() -> dict[str, str]:
    """Backend name -> package providing it, for every present third-party backend, without
    importing one: entry points are package metadata."""
    found = {b: pkg for b, (pkg, _) in KNOWN_BACKENDS.items() if is_available(pkg)}
    for point in entry_points(group="torch_dynamo_backends"):
        found.setdefault(point.name, point.value.split(".")[0])
    return found


@dataclasses.dataclass(frozen=True)
class TorchCompileConfig(Config):
    backend: str = "openvino"
    fullgraph: bool = False
    dynamic: bool = False

    def validate(self) -> None:
        if not self.backend or self.backend == "inductor":
            raise InputError("torch_compile takes a third-party backend; Inductor is the `inductor` runtime")


class TorchCompile(Runtime[TorchCompileConfig]):
    name = "torch_compile"
    Config = TorchCompileConfig
    description = "torch.compile with a registered third-party backend (openvino, tensorrt)"
    devices = ("cpu", "cuda")

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        offered = []
        for backend in registered_backends():
            devices = KNOWN_BACKENDS.get(backend, (None, ("cpu", "cuda")))[1]
            if device.split(":")[0] in devices:
                offered.append(Variant(
                    TorchCompileConfig(backend=backend), f"compile-{backend}",
                    f"torch.compile(backend={backend!r}): {backend} runs the graphs Dynamo captures", cost=3.0,
                    stack=False,
                ))
        return offered

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        cfg = self.config
        if cfg.backend not in registered_backends() and cfg.backend not in torch._dynamo.list_backends():
            package = KNOWN_BACKENDS.get(cfg.backend, (cfg.backend,))[0]
            raise Unsupported(f"no torch.compile backend {cfg.backend!r} here (pip install {package})")
        module = model.module.to(ctx.device).eval()
        breaks = graph_breaks(module, ctx.example_inputs)
        if cfg.fullgraph and fullgraph_refusal(breaks):
            raise Unsupported(fullgraph_refusal(breaks))
        options = _backend_options(cfg.backend, ctx)
        compiled = torch.compile(module, backend=cfg.backend, fullgraph=cfg.fullgraph, dynamic=cfg.dynamic,
                                 options=options)
        compile_s = compile_now(compiled, ctx.example_inputs)
        info = {
            **dataclasses.asdict(cfg), "options": options, "compile_s": round(compile_s, 3), **breaks,
            **_read_back(cfg.backend),
        }
        return CompiledRunner(compiled, ctx.device, info, ctx.example_inputs)

    def load(self, directory: Path, files: list[str], ctx: BuildContext) -> Runner:
        return self.build_impl(Artifact("torch", load_exported_module(directory, files, ctx.device)), ctx)


def _backend_options(backend: str, ctx: BuildContext) -> dict[str, Any] | None:
    if backend == "openvino":
        block_usage_telemetry()
        # f32 pinned, threads as every other candidate; no on-disk model cache (a stale cache
        # from another run would be timed instead of this build).
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": str(ctx.threads)}
        return {"device": "CPU", "config": config, "model_caching": False}
    return None


def _read_back(backend: str) -> dict[str, Any]:
    """What the backend compiled, where it can be read: OpenVINO keeps each partition's
    compiled model in a module-level cache."""
    if backend != "openvino":
        return {}
    try:
        from openvino.frontend.pytorch.torchdynamo import execute
    except ImportError:
        return {}
    compiled = list(execute.compiled_cache.values())
    precisions = sorted({c.get_property("INFERENCE_PRECISION_HINT").get_type_name() for c in compiled})
    return {"openvino_partitions": len(compiled), "inference_precision": precisions or "not read back"}
