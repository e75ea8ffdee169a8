"""TensorRT through torch-tensorrt's dynamo path: torch.export, then `torch_tensorrt.dynamo.compile`.

The exported graph is split by converter support: runs of ops TensorRT can take (at least
`min_block_size` of them, and none named in `torch_executed_ops`) become TensorRT engines, the
rest stays in PyTorch. The runner's info says how many subgraphs ran in each and which ops fell
back (`partition_report`, with the ops named as `torch_executed_ops` takes them), and, per
precision, how many engine layers ran in fp32 / fp16 / int8 / fp8, read back from the engines'
inspector. A build where nothing reached TensorRT is `unsupported`: it would be eager PyTorch
under another name.

Precisions. torch-tensorrt 2.13 builds strongly typed networks (TensorRT 11 has no other
kind): layers run in the dtypes of the graph, and the old `enabled_precisions` is ignored by
the dynamo path. So:
- fp32: TF32 disabled (`disable_tf32`), so the answers match eager fp32 (eager CUDA matmuls
  do not use TF32 by default either); `tf32` keeps TensorRT's default of TF32 matmuls.
- fp16: torch-tensorrt's rule-based autocast (`enable_autocast`, low precision fp16), which
  keeps inputs and outputs fp32 and leaves in fp32 the ops its rules flag (outputs above 512
  on the example batch, deep reductions).
- int8 / fp8: explicit quantization. NVIDIA ModelOpt (`nvidia-modelopt`) inserts quantizers
  and calibrates them on the calibration batches (int8: per-channel weights, per-tensor
  activations, max calibration; fp8: e4m3), the model is exported in ModelOpt's export mode
  (its quantizers become `tensorrt.quantize_op` nodes) and TensorRT builds them as Q/DQ
  layers. fp8 needs compute capability 8.9+ (the check is shared with the `fp8` pass).

Saved artifact: `torch_tensorrt.save` (an ExportedProgram holding the serialized engines,
`model.ep`) and the build report (`tensorrt.json`); `load` reads both back. Engines run only on
GPUs like the one they were built on, with the same TensorRT release.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hone._optional import is_available, require
from hone.config import Config
from hone.errors import InputError, MissingDependency, Unsupported
from hone.plugin import Artifact, BuildContext, Variant
from hone.runtimes._trt_fallback import layer_precisions, merge_layer_precisions, partition_report
from hone.runtimes.base import Runner, Runtime

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

PRECISIONS = ("fp32", "tf32", "fp16", "int8", "fp8")
# What each precision computes in, for the validation tolerance (None: the artifact's, fp32).
COMPUTE_DTYPES = {"fp32": None, "tf32": "tf32", "fp16": "float16", "int8": "int8", "fp8": "fp8"}
QUANTIZED = ("int8", "fp8")
MAX_OPTIMIZATION_LEVEL = 5  # TensorRT's builder optimization levels are 0..5 (default 3)
# torch-tensorrt names ops by their qualified name: torch.ops.<namespace>.<op>.<overload>.
OP_NAME = re.compile(r"^torch\.ops\.[A-Za-z_]\w*\.[A-Za-z_]\w*\.[A-Za-z_]\w*$")
MODELOPT_WHY = "torch-tensorrt builds int8 and fp8 from models NVIDIA ModelOpt quantized"
NO_GPU = "TensorRT needs a CUDA GPU; this machine reports none"
SAVED_PROGRAM, SAVED_REPORT = "model.ep", "tensorrt.json"


@dataclasses.dataclass(frozen=True)
class TensorRTConfig(Config):
    precision: str = "fp16"
    min_block_size: int = 5  # torch-tensorrt's default: shorter runs of convertible ops stay in PyTorch
    torch_executed_ops: tuple[str, ...] = ()  # e.g. "torch.ops.aten._softmax.default": kept in PyTorch
    optimization_level: int | None = None  # 0..5; None: TensorRT's default (3)
    workspace_size: int = 0  # bytes TensorRT may use for tactics; 0: its default (the GPU's memory)

    def __post_init__(self) -> None:
        object.__setattr__(self, "torch_executed_ops", tuple(self.torch_executed_ops))  # a list from JSON
        super().__post_init__()

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.min_block_size < 1:
            raise InputError(f"min_block_size must be at least 1, not {self.min_block_size}")
        bad = [op for op in self.torch_executed_ops if not isinstance(op, str) or not OP_NAME.match(op)]
        if bad:
            raise InputError(f"torch_executed_ops must be qualified op names like "
                             f"'torch.ops.aten._softmax.default', not {bad}")
        check_builder_options(self.optimization_level, self.workspace_size)


class TensorRTRunner(Runner):
    """Runs the graph module torch-tensorrt returned: engines and PyTorch subgraphs in order."""

    def __init__(self, module: torch.nn.Module, device: str, info: dict[str, Any],
                 example_inputs: tuple[torch.Tensor, ...] = ()):
        self.module = module
        self.device = device
        self._info = info
        self.example_inputs = example_inputs  # what torch_tensorrt.save traces
        self.compute_dtype = COMPUTE_DTYPES[info["precision"]]

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return self.module(*(t.to(self.device) for t in inputs))

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def summary(self) -> list[str]:
        if "torch_subgraphs" not in self._info:
            return []
        return [f"TensorRT subgraphs {self._info.get('trt_subgraphs', 0)}, PyTorch subgraphs {self._info['torch_subgraphs']}"]

    def save(self, directory: Path) -> list[str]:
        import torch_tensorrt

        if not self.example_inputs:
            raise Unsupported("this TensorRT runner was loaded, not built: save the original artifact instead")
        torch_tensorrt.save(self.module, str(directory / SAVED_PROGRAM), output_format="exported_program",
                            arg_inputs=list(self.example_inputs))
        (directory / SAVED_REPORT).write_text(json.dumps(self._info, indent=1, default=str))
        return [SAVED_PROGRAM, SAVED_REPORT]


class TensorRT(Runtime[TensorRTConfig]):
    name = "tensorrt"
    Config = TensorRTConfig
    description = "TensorRT engines through torch-tensorrt (dynamo), PyTorch for what it cannot convert"
    requires = ("torch_tensorrt",)
    devices = ("cuda",)

    @classmethod
    def unavailable_here(cls, hw: "Hardware", device: str) -> str | None:
        from hone._optional import torch_release_mismatch

        return gpu_missing(hw, device) or torch_release_mismatch("torch-tensorrt")

    @classmethod
    def precision_unavailable(cls, precision: str, hw: "Hardware", device: str) -> str | None:
        """Why `precision` cannot run on `device` of `hw` (its GPU's capability), or None."""
        if precision == "fp8":
            from hone.passes.torch.fp8 import Fp8

            return Fp8.unavailable_here(hw, device)  # the one fp8 capability check (8.9+)
        return None

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if not device.startswith("cuda"):
            return []

        def variant(precision: str, origin: str, cost: float = 4.0) -> Variant:
            return Variant(TensorRTConfig(precision=precision), f"tensorrt-{precision}", origin, cost=cost,
                           compute_dtype=COMPUTE_DTYPES[precision])

        offered = [
            variant("fp16", "TensorRT engines, fp16 autocast (fp32 I/O, sensitive ops kept fp32)"),
            variant("fp32", "TensorRT engines in fp32 (TF32 off): fusion and kernel tuning alone"),
            # Calibration adds to the build. Without nvidia-modelopt these stay in the plan and
            # report `unsupported` with the install hint.
            variant("int8", "TensorRT int8: ModelOpt calibration, explicit Q/DQ layers", 4.5),
        ]
        # fp8 only where the GPU has fp8 kernels (an unknown machine: not offered).
        if hw is not None and not cls.precision_unavailable("fp8", hw, device):
            offered.append(variant("fp8", "TensorRT fp8 e4m3: ModelOpt calibration, explicit Q/DQ layers", 4.5))
        return offered

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        cfg = self.config
        device = cuda_device(ctx.device)
        check_precision_here(cfg.precision, device)
        resolve_ops(cfg.torch_executed_ops)  # a typo is the user's error, before any work
        torch_tensorrt = require("torch_tensorrt")
        module = model.module.to(device).eval()
        inputs = tuple(t.to(device) for t in ctx.example_inputs)
        notes: dict[str, Any] = {}
        export_mode: Any = contextlib.nullcontext()
        if cfg.precision in QUANTIZED:
            module, export_mode, notes = quantize_with_modelopt(module, cfg.precision, ctx, device)
        start = time.perf_counter()
        # ModelOpt's example compiles inside its export mode too: its quantizers must stay
        # tensorrt.quantize_op nodes while torch-tensorrt lowers the program.
        with export_mode, torch.no_grad():
            try:
                program = torch.export.export(module, inputs, strict=False)
            except Exception as exc:  # noqa: BLE001 - export raises many types; all mean "cannot capture"
                raise Unsupported(one_line("torch.export could not capture the model for torch-tensorrt", exc)) from exc
            with detailed_layer_information():
                try:
                    compiled = torch_tensorrt.dynamo.compile(program, arg_inputs=list(inputs),
                                                             **compile_settings(cfg, ctx, device, inputs))
                except Exception as exc:  # noqa: BLE001 - converters and the builder raise many types
                    reraise_if_out_of_memory(exc)
                    raise Unsupported(one_line("torch-tensorrt could not build the engines", exc)) from exc
        compile_s = time.perf_counter() - start
        report = partition_report(compiled)
        if not report["trt_subgraphs"]:
            fell_back = ", ".join(list(report["fallback_ops"])[:5])
            raise Unsupported(f"torch-tensorrt converted no subgraph (min_block_size={cfg.min_block_size}); "
                              f"everything would run in PyTorch: {fell_back}")
        info = {
            "backend": "torch-tensorrt", **dataclasses.asdict(cfg), "compile_s": round(compile_s, 3), **report,
            **engine_layers(compiled), **notes, **_versions(torch_tensorrt),
        }
        return TensorRTRunner(compiled, str(device), info, inputs)

    def load(self, directory: Path, files: list[str], ctx: BuildContext) -> Runner:
        torch_tensorrt = require("torch_tensorrt")
        device = cuda_device(ctx.device)
        program = torch_tensorrt.load(str(directory / SAVED_PROGRAM))
        info = json.loads((directory / SAVED_REPORT).read_text()) if SAVED_REPORT in files else {
            "precision": self.config.precision}
        return TensorRTRunner(program.module(), str(device), {**info, "loaded_from": str(directory)})


def check_builder_options(optimization_level: int | None, workspace_size: int) -> None:
    """The TensorRT builder options both TensorRT runtimes take."""
    if optimization_level is not None and not 0 <= optimization_level <= MAX_OPTIMIZATION_LEVEL:
        raise InputError(f"optimization_level must be in 0..{MAX_OPTIMIZATION_LEVEL}, not {optimization_level}")
    if workspace_size < 0:
        raise InputError(f"workspace_size must be 0 (TensorRT's default) or a byte count, not {workspace_size}")


def gpu_missing(hw: "Hardware", device: str) -> str | None:
    """Why there is no CUDA GPU for `device` ("cuda" or "cuda:N") on `hw`, or None."""
    if not device.startswith("cuda"):
        return f"TensorRT runs on CUDA GPUs, not {device}"
    _, _, index = device.partition(":")
    if not hw.gpus:
        return NO_GPU
    if index.isdigit() and int(index) >= len(hw.gpus):
        return f"this machine has {len(hw.gpus)} CUDA GPU(s), no {device}"
    return None


def cuda_device(device: str) -> torch.device:
    """The build's device, checked live: a worker may have no usable CUDA even on a GPU host."""
    if not device.startswith("cuda"):
        raise Unsupported(f"TensorRT runs on CUDA GPUs, not {device}")
    if not torch.cuda.is_available():
        raise Unsupported(f"{NO_GPU} (torch.cuda.is_available() is False)")
    resolved = torch.device(device)
    return torch.device("cuda", resolved.index if resolved.index is not None else torch.cuda.current_device())


def check_precision_here(precision: str, device: torch.device) -> None:
    """The precision's needs, checked on the GPU the build runs on."""
    if precision == "fp8":
        from hone.passes.torch.fp8 import MIN_CAPABILITY, NEEDS

        capability = torch.cuda.get_device_capability(device)
        if capability < MIN_CAPABILITY:
            raise Unsupported(f"{NEEDS}; {torch.cuda.get_device_name(device)} has compute capability "
                              f"{capability[0]}.{capability[1]}")
    if precision in QUANTIZED and not is_available("modelopt"):
        raise MissingDependency("nvidia-modelopt", cause=MODELOPT_WHY)


def resolve_ops(names: tuple[str, ...]) -> list[Any]:
    """The op overloads `names` denote; an unknown name is an InputError (a typo would
    otherwise silently keep nothing in PyTorch)."""
    resolved = []
    for name in names:
        _, _, namespace, op, overload = name.split(".")
        try:
            resolved.append(getattr(getattr(getattr(torch.ops, namespace), op), overload))
        except (AttributeError, RuntimeError) as exc:
            raise InputError(f"torch_executed_ops: no op {name!r} ({exc})") from exc
    return resolved


def compile_settings(cfg: TensorRTConfig, ctx: BuildContext, device: torch.device,
                     inputs: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    """Keyword arguments of torch_tensorrt.dynamo.compile (2.13 names) for this config."""
    settings: dict[str, Any] = {
        "device": device,
        "min_block_size": cfg.min_block_size,
        # Qualified names: torch-tensorrt's partitioner matches a node by its target or its name.
        "torch_executed_ops": set(cfg.torch_executed_ops),
        "optimization_level": cfg.optimization_level,
        "workspace_size": cfg.workspace_size,
        "disable_tf32": cfg.precision == "fp32",
        # The default timing cache is one file in the system temp dir, shared by every process:
        # each candidate keeps its own, so no candidate's build reads another's tuning.
        "timing_cache_path": str(ctx.workdir / "trt-timing.cache"),
    }
    if cfg.precision == "fp16":
        settings.update(
            enable_autocast=True,
            autocast_low_precision_type=torch.float16,
            # The rules that keep an op in fp32 (outputs over 512) judge the outputs of a real
            # batch; one batch keeps the traced intermediates' memory small.
            autocast_calibration_dataloader=[inputs],
        )
    return settings


def quantize_with_modelopt(module: torch.nn.Module, precision: str, ctx: BuildContext,
                           device: torch.device) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """Insert ModelOpt quantizers and calibrate them on the calibration batches; returns the
    module, ModelOpt's export-mode context (inside it the quantizers export as
    tensorrt.quantize_op) and notes for the store."""
    import modelopt.torch.quantization as mtq
    from modelopt.torch.quantization.nn import TensorQuantizer
    from modelopt.torch.quantization.utils import export_torch_mode

    config = {"int8": mtq.INT8_DEFAULT_CFG, "fp8": mtq.FP8_DEFAULT_CFG}[precision]
    batches = [tuple(t.to(device) for t in batch) for batch in ctx.calibration_batches()]

    def forward_loop(model: torch.nn.Module) -> None:
        for batch in batches:
            model(*batch)

    start = time.perf_counter()
    with torch.no_grad():
        # mtq.quantize swaps layers in place: on a copy, so an in-process build (the winner's
        # runner) leaves the caller's model as it was.
        quantized = mtq.quantize(copy.deepcopy(module), config, forward_loop)
    calibration_s = time.perf_counter() - start
    layers = sum(1 for name, q in quantized.named_modules()
                 if isinstance(q, TensorQuantizer) and q.is_enabled and name.endswith("weight_quantizer"))
    if not layers:
        raise Unsupported(f"ModelOpt's {precision} config quantized no layer of this model")
    notes = {"quantization": f"modelopt-{precision}", "quantized_layers": layers,
             "calibration_batches": len(batches), "calibration_s": round(calibration_s, 3)}
    return quantized, export_torch_mode(), notes


@contextlib.contextmanager
def detailed_layer_information():
    """Build engines with detailed profiling verbosity, so each engine's layer information
    carries its layers' precisions. torch-tensorrt turns it on only under its Debugger, which
    also reconfigures the root logger; this applies the one setting the Debugger passes to the
    interpreter (as it does, by patching its constructor), scoped to this block. Without it
    (another torch-tensorrt), engines still build; their report then lists layer names only."""
    try:
        import functools
        from unittest import mock

        from torch_tensorrt.dynamo.conversion._TRTInterpreter import TRTInterpreter
        from torch_tensorrt.dynamo.debug._DebuggerConfig import DebuggerConfig
    except ImportError:
        yield
        return
    detailed = DebuggerConfig(engine_builder_monitor=False)
    with mock.patch.object(TRTInterpreter, "__init__",
                           functools.partialmethod(TRTInterpreter.__init__, _debugger_config=detailed)):
        yield


def engine_layers(compiled: torch.nn.Module) -> dict[str, Any]:
    """Layer precisions summed over the engines the build made, read from each engine."""
    reports = []
    for name, child in compiled.named_children():
        if name.startswith("_run_on_acc") and hasattr(child, "get_layer_info"):
            try:
                reports.append(layer_precisions(child.get_layer_info()))
            except Exception:  # noqa: BLE001 - the report is evidence, not a reason to fail the build
                continue
    return merge_layer_precisions(reports) if reports else {}


def reraise_if_out_of_memory(exc: BaseException) -> None:
    """Out of memory is the worker's `oom` status, not `unsupported`: let it through."""
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)) or "out of memory" in str(exc).lower():
        raise exc


def one_line(what: str, exc: BaseException) -> str:
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(root).strip()
    first = text.splitlines()[0] if text else ""
    return f"{what}: {type(root).__name__}: {first}"[:500]


def _versions(torch_tensorrt: Any) -> dict[str, str]:
    versions = {"torch_tensorrt_version": torch_tensorrt.__version__}
    with contextlib.suppress(ImportError):
        import tensorrt

        versions["tensorrt_version"] = tensorrt.__version__
    return versions
