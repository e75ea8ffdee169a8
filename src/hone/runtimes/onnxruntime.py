"""ONNX Runtime. Thread counts are set explicitly (the same as every other candidate), and the
providers that really ran are read back from the session, not assumed from the request."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from hone.config import Config
from hone.errors import InputError, Unsupported
from hone.plugin import Artifact, BuildContext
from hone.runtimes.base import Runner, Runtime
from hone.search.recipe import Recipe, Step

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
OPT_LEVELS = ("disable", "basic", "extended", "all")


@dataclasses.dataclass(frozen=True)
class OnnxRuntimeConfig(Config):
    ep: str = "cpu"
    graph_optimization_level: str = "all"
    intra_op_threads: int | None = None  # None: the sweep's thread count

    def validate(self) -> None:
        if self.ep not in PROVIDERS:
            raise InputError(f"unknown ONNX Runtime execution provider {self.ep!r}; known: {', '.join(PROVIDERS)}")
        if self.graph_optimization_level not in OPT_LEVELS:
            raise InputError(f"graph_optimization_level must be one of {', '.join(OPT_LEVELS)}")


class OrtRunner(Runner):
    def __init__(self, session: Any, input_names: list[str], info: dict[str, Any]):
        self.session = session
        self.input_names = input_names
        self._info = info

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        feed = {name: t.detach().cpu().numpy() for name, t in zip(self.input_names, inputs)}
        return tuple(torch.from_numpy(o) for o in self.session.run(None, feed))

    def info(self) -> dict[str, Any]:
        return dict(self._info)


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    Config = OnnxRuntimeConfig
    description = "ONNX Runtime inference session"
    requires = ("onnxruntime",)
    input_format = "onnx"

    @classmethod
    def propose(cls, workload: "Workload", hw: "Hardware", device: str) -> list[Recipe]:
        if device != "cpu":
            return []
        export = Step("onnx_export", _export_config())
        return [Recipe("onnxruntime", (export,), Step(cls.name, OnnxRuntimeConfig()), "ONNX graph optimizations")]

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        import onnxruntime as ort

        cfg: OnnxRuntimeConfig = self.config  # type: ignore[assignment]
        wanted = PROVIDERS[cfg.ep]
        if wanted not in ort.get_available_providers():
            raise Unsupported(f"ONNX Runtime here has no {wanted} (has {', '.join(ort.get_available_providers())})")
        options = ort.SessionOptions()
        options.intra_op_num_threads = cfg.intra_op_threads or ctx.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[cfg.graph_optimization_level]
        session = ort.InferenceSession(str(model.path), options, providers=[wanted])
        info = {
            "providers": session.get_providers(),  # what really runs, read back
            "intra_op_num_threads": options.intra_op_num_threads,
            "graph_optimization_level": cfg.graph_optimization_level,
            "onnxruntime_version": ort.__version__,
            **model.notes,
        }
        return OrtRunner(session, [i.name for i in session.get_inputs()], info)


def _export_config() -> Config:
    from hone.passes.onnx.export import OnnxExportConfig

    return OnnxExportConfig()
