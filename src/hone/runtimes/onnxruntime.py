"""ONNX Runtime. Thread counts are set explicitly (the same as every other candidate), and the
providers that really ran are read back from the session, not assumed from the request.

Execution providers: CPU everywhere; CUDA and TensorRT where onnxruntime-gpu is installed
(`onnxruntime-cuda`, `onnxruntime-tensorrt` on a CUDA device). The session writes the graph
it optimized (fusions, constant folding, layout changes) next to the input model: that file is
the saved artifact, so a deployment loads it without optimizing again. With the "all" level it
may hold layout-specific (NCHWc) ops for this CPU's ISA: it runs on machines like this one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hone.config import Config
from hone.errors import InputError, Unsupported
from hone.plugin import Artifact, BuildContext, Claim, Variant
from hone.runtimes.base import Runner, Runtime, admits

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
    fp16: bool = False  # TensorRT EP only: let TensorRT pick fp16 kernels (trt_fp16_enable)
    # Serving: more than 1 runs independent branches of the graph at once (ORT_PARALLEL), on
    # this many inter-op threads, each node still on `intra_op_threads`.
    inter_op_threads: int = 1

    OMIT_AT_DEFAULT = ("inter_op_threads",)

    def validate(self) -> None:
        if self.inter_op_threads < 1:
            raise InputError(f"inter_op_threads must be at least 1, not {self.inter_op_threads}")
        if self.ep not in PROVIDERS:
            raise InputError(f"unknown ONNX Runtime execution provider {self.ep!r}; known: {', '.join(PROVIDERS)}")
        if self.graph_optimization_level not in OPT_LEVELS:
            raise InputError(f"graph_optimization_level must be one of {', '.join(OPT_LEVELS)}")
        if self.intra_op_threads is not None and self.intra_op_threads < 1:
            raise InputError(f"intra_op_threads must be at least 1, not {self.intra_op_threads}")
        if self.fp16 and self.ep != "tensorrt":
            raise InputError("fp16 is an option of the TensorRT execution provider (ep='tensorrt')")


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

    def serves(self, inputs: tuple[torch.Tensor, ...]) -> bool:
        # The session's own input shapes: a symbolic dimension (a name, or None) takes any size.
        return admits([i.shape for i in self.session.get_inputs()], inputs)

    def save(self, directory: Path) -> list[str]:
        """The optimized graph the session wrote (and its weights file), else the model it
        loaded with its external data. The graph names its data file, so names are kept."""
        import shutil

        source = Path(self._info.get("optimized_model") or self._info["model_path"])
        files = [source.name] + [p.name for p in source.parent.glob(source.name + ".data")]
        for name in files:
            shutil.copyfile(source.parent / name, directory / name)
        return files


class OnnxRuntime(Runtime[OnnxRuntimeConfig]):
    name = "onnxruntime"
    Config = OnnxRuntimeConfig
    description = "ONNX Runtime inference session"
    requires = ("onnxruntime",)
    # CUDA: the CUDA and TensorRT execution providers (onnxruntime-gpu); the session says when
    # this onnxruntime has neither.
    devices = ("cpu", "cuda")
    consumes = ("onnx",)
    default_for = ("onnx",)
    accepts_dtypes = ("*",)

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if device == "cpu":
            no_dispatch = Claim(1.0, "a C++ session runs the graph without Python dispatch per op")
            # ORT_ENABLE_ALL fuses Conv/Gemm with bias and activation, LayerNorm and GELU (attention
            # and SkipLayerNorm of a dynamo export only with the ort-fusions pass, passes/onnx/ort_fusions.py).
            fewer_passes = Claim(0.6, "graph optimizations fuse activations and norms into their producers")
            # The lower optimization levels matter for quantized graphs, whose QDQ fusions and
            # layout changes differ by level: offered stacked on quantizers only. Level
            # "disable" runs an ONNX file as given: the baseline of a workload that is one.
            return [
                Variant(OnnxRuntimeConfig(), "onnxruntime", "ONNX graph optimizations", cost=1.0,
                        addresses={"overhead": no_dispatch, "memory": fewer_passes}),
                *(Variant(OnnxRuntimeConfig(graph_optimization_level=level), f"onnxruntime-{level}",
                          f"ONNX Runtime with graph optimization level {level!r}", cost=1.0, alone=False,
                          baseline=level == "disable")
                  for level in ("extended", "basic", "disable")),
            ]
        return [
            Variant(OnnxRuntimeConfig(ep="cuda"), "onnxruntime-cuda", "ONNX Runtime's CUDA execution provider",
                    cost=1.0, stack=False),
            Variant(OnnxRuntimeConfig(ep="tensorrt", fp16=True), "onnxruntime-tensorrt",
                    "ONNX Runtime's TensorRT execution provider, fp16 kernels allowed", cost=3.5,
                    compute_dtype="float16", stack=False),
        ]

    @classmethod
    def serving_variants(cls, config: OnnxRuntimeConfig, threads: int) -> list[tuple[str, dict[str, Any]]]:
        """With two threads or more: half of them inter-op (independent branches at once), half
        intra-op, against all of them intra-op (the layout's own setting)."""
        if config.ep != "cpu" or threads < 2:
            return []
        return [(f"inter-op {2}x intra-op {threads // 2}", {"inter_op_threads": 2, "intra_op_threads": threads // 2})]

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        optimized = model.path.with_name(model.path.stem + ".optimized.onnx")
        return self._session(model.path, ctx, optimized)

    def load(self, directory: Path, files: list[str], ctx: BuildContext) -> Runner:
        return self._session(directory / files[0], ctx, None)

    def _session(self, path: Path, ctx: BuildContext, optimized: Path | None) -> "OrtRunner":
        import onnxruntime as ort

        cfg = self.config
        wanted = PROVIDERS[cfg.ep]
        if wanted not in ort.get_available_providers():
            hint = "" if cfg.ep == "cpu" else "; pip install onnxruntime-gpu (in place of onnxruntime)"
            raise Unsupported(
                f"ONNX Runtime here has no {wanted} (has {', '.join(ort.get_available_providers())}){hint}"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = cfg.intra_op_threads or ctx.threads
        options.inter_op_num_threads = cfg.inter_op_threads
        options.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if cfg.inter_op_threads > 1
                                  else ort.ExecutionMode.ORT_SEQUENTIAL)
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[cfg.graph_optimization_level]
        if optimized is not None:
            options.optimized_model_filepath = str(optimized)
            # Weights go to a data file of the optimized graph's own: by default it would point
            # at the input model's data file, which a saved copy does not have beside it.
            options.add_session_config_entry(
                "session.optimized_model_external_initializers_file_name", optimized.name + ".data"
            )
        session = ort.InferenceSession(str(path), options, providers=_providers(cfg, ctx))
        runner = OrtRunner(session, [i.name for i in session.get_inputs()], {
            "providers": session.get_providers(),  # what really runs, read back
            "intra_op_num_threads": options.intra_op_num_threads,
            "inter_op_num_threads": options.inter_op_num_threads,
            "execution_mode": "parallel" if cfg.inter_op_threads > 1 else "sequential",
            "graph_optimization_level": cfg.graph_optimization_level,
            "onnxruntime_version": ort.__version__,
            "model_path": str(path),
            **({"optimized_model": str(optimized)} if optimized is not None and optimized.exists() else {}),
        })
        if cfg.fp16:
            runner.compute_dtype = "float16"
        return runner


def _providers(cfg: OnnxRuntimeConfig, ctx: BuildContext) -> list[Any]:
    """The requested provider first, with its options, and CPU behind it for the nodes it
    cannot take (ORT assigns those to CPU; get_providers() then lists both)."""
    device_id = int(ctx.device.split(":")[1]) if ":" in ctx.device else 0
    if cfg.ep == "cuda":
        return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
    if cfg.ep == "tensorrt":
        options = {
            "device_id": device_id,
            "trt_fp16_enable": cfg.fp16,
            # Engines are cached beside the model: the first call builds them, which the build
            # time (first call) then carries; the timed calls reuse them.
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(ctx.workdir / "trt-engines"),
        }
        return [("TensorrtExecutionProvider", options), ("CUDAExecutionProvider", {"device_id": device_id}),
                "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]
