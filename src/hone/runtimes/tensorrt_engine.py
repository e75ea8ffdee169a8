"""A TensorRT engine built from the ONNX artifact with TensorRT's own Python API.

`trt.Builder` + `trt.OnnxParser` read the exported graph (a parse failure is `unsupported`,
with the parser's errors); `build_serialized_network` builds the engine; the runner feeds it
torch CUDA tensors as I/O buffers (`set_tensor_address`) and enqueues it on torch's current
stream (`execute_async_v3`), so no host copies and no extra synchronization.

Precision comes from the graph, not from builder flags. TensorRT 11 builds only strongly typed
networks (its FP16/INT8 builder flags are gone), and on TensorRT 10 this runtime asks for a
strongly typed network too, so both behave alike: every layer runs in its tensors' types.
- fp32: TF32 cleared, so matmuls really run in fp32 (eager's default on CUDA); `tf32` keeps
  TensorRT's TF32 default.
- fp16: the ONNX graph is converted to fp16 first (ONNX Runtime's float16 converter, I/O kept
  fp32, its op block list left in fp32), then built as is.
- int8: explicit quantization only (implicit calibration is deprecated in TensorRT 10 and gone
  in 11). The graph must carry Q/DQ nodes with signed int8 and zero points of 0 (TensorRT's
  requirement): `ort_quantize_static` with `activation_type="qint8"` and symmetric ranges
  produces it, which is the `onnx-tensorrt-int8` recipe.
An input dimension the graph leaves dynamic gets an optimization profile: 1 to the example's
size for the batch dimension, the example's size for the others.

What ran is read back: the engine inspector's per-layer precisions (the engine is built with
detailed profiling verbosity), the engine's I/O types, and the TensorRT version. The saved
artifact is the serialized engine (`model.engine`) with its I/O description (`engine.json`);
an engine runs only on a GPU like the one it was built on, with the same TensorRT release.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hone._optional import require
from hone.config import Config
from hone.errors import InputError, MissingDependency, Unsupported
from hone.plugin import Artifact, BuildContext, Variant
from hone.runtimes._trt_fallback import layer_precisions
from hone.runtimes.base import Runner, Runtime
from hone.runtimes.tensorrt import check_builder_options, cuda_device, gpu_missing, one_line, reraise_if_out_of_memory

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

PRECISIONS = ("fp32", "tf32", "fp16", "int8")
COMPUTE_DTYPES = {"fp32": None, "tf32": "tf32", "fp16": "float16", "int8": None}  # int8: the QDQ artifact says so
# The trait of an ONNX graph TensorRT's explicit int8 takes: Q/DQ pairs in signed int8 with
# zero points of 0 (a quantizer that makes one says it gives this).
SYMMETRIC_QDQ = "int8-qdq-symmetric"
SAVED_ENGINE, SAVED_IO = "model.engine", "engine.json"
MAX_PARSER_ERRORS = 3
TORCH_DTYPES = {  # TensorRT DataType member name -> torch dtype
    "FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT8": torch.int8,
    "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool, "UINT8": torch.uint8,
    "FP8": torch.float8_e4m3fn,
}


@dataclasses.dataclass(frozen=True)
class TensorRTEngineConfig(Config):
    precision: str = "fp16"
    optimization_level: int | None = None  # 0..5; None: TensorRT's default (3)
    workspace_size: int = 0  # bytes TensorRT may use for tactics; 0: its default
    max_batch_size: int | None = None  # a dynamic batch dimension's profile maximum; None: the example's

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        check_builder_options(self.optimization_level, self.workspace_size)
        if self.max_batch_size is not None and self.max_batch_size < 1:
            raise InputError(f"max_batch_size must be at least 1, not {self.max_batch_size}")


class EngineRunner(Runner):
    """One execution context over a deserialized engine; outputs are fresh torch tensors."""

    def __init__(self, engine: tuple[Any, Any], serialized: bytes, device: torch.device, output_names: list[str],
                 info: dict[str, Any]):
        import tensorrt as trt

        engine, self._runtime = engine  # (engine, the runtime that deserialized it: kept alive with it)
        self.engine = engine
        self.serialized = serialized
        self.device = str(device)
        self._device = device
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        engine_outputs = [n for n in names if n not in self.inputs]
        self.outputs = _in_model_order(engine_outputs, output_names)
        self.dtypes = {n: torch_dtype(engine.get_tensor_dtype(n)) for n in names}
        self._info = {**info, "engine_io": {n: str(self.dtypes[n]).removeprefix("torch.") for n in names},
                      **inspect_engine(trt, engine, self.context)}

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        # The inputs must stay referenced until the enqueued work has read them: the list does
        # (and torch's allocator frees stream-ordered, so reuse after return is safe too).
        feeds = [t.to(self._device, self.dtypes[name]).contiguous() for name, t in zip(self.inputs, inputs)]
        for name, tensor in zip(self.inputs, feeds):
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise Unsupported(f"TensorRT output {name!r} has a data-dependent shape {shape}; not supported here")
            out = torch.empty(shape, dtype=self.dtypes[name], device=self._device)
            self.context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        if not self.context.execute_async_v3(torch.cuda.current_stream(self._device).cuda_stream):
            raise RuntimeError("TensorRT's execute_async_v3 failed (see TensorRT's log above)")
        return tuple(outputs)

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def save(self, directory: Path) -> list[str]:
        (directory / SAVED_ENGINE).write_bytes(self.serialized)
        (directory / SAVED_IO).write_text(json.dumps({"outputs": self.outputs, "info": self._info}, indent=1,
                                                     default=str))
        return [SAVED_ENGINE, SAVED_IO]


class TensorRTEngine(Runtime[TensorRTEngineConfig]):
    name = "tensorrt_engine"
    Config = TensorRTEngineConfig
    description = "TensorRT engine built from the ONNX graph (trt.Builder + OnnxParser)"
    requires = ("tensorrt",)
    consumes = ("onnx",)
    accepts_dtypes = ("*",)
    keeps = (SYMMETRIC_QDQ,)  # its int8 variant builds the Q/DQ layers as they are
    devices = ("cuda",)

    @classmethod
    def unavailable_here(cls, hw: "Hardware", device: str) -> str | None:
        return gpu_missing(hw, device)

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if not device.startswith("cuda"):
            return []
        # The export costs 0.5 of these recipes' 4 (fp16) and 4.5 (int8: the quantizer's
        # calibration another 0.5).
        return [
            Variant(TensorRTEngineConfig(precision="fp16"), "onnx-tensorrt-fp16",
                    "TensorRT engine from the ONNX graph converted to fp16 (fp32 I/O)", cost=3.5,
                    compute_dtype="float16", stack=False),  # a QDQ graph built in fp16: on request only
            # Explicit quantization only: the graph must come quantized with symmetric signed Q/DQ.
            Variant(TensorRTEngineConfig(precision="int8"), "onnx-tensorrt-int8",
                    "TensorRT int8 engine from the explicitly quantized (QDQ) graph",
                    cost=3.5, needs=frozenset({SYMMETRIC_QDQ}), alone=False),
        ]

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        cfg = self.config
        device = cuda_device(ctx.device)
        path = Path(model.path)
        notes: dict[str, Any] = {}
        if cfg.precision == "int8":
            notes["qdq"] = require_int8_qdq(path)
            path, notes["qdq"]["int32_biases_folded"] = fold_int32_dequantize(path, ctx.workdir)
        elif cfg.precision == "fp16":
            path, notes["fp16_conversion"] = convert_to_fp16(path, ctx.workdir)
        trt = require("tensorrt")
        start = time.perf_counter()
        with torch.cuda.device(device):  # TensorRT builds for, and allocates on, the current device
            serialized, profile = build_engine(trt, path, cfg, ctx)
            build_s = time.perf_counter() - start
            info = {"backend": "tensorrt", **dataclasses.asdict(cfg), "build_s": round(build_s, 3),
                    "engine_bytes": len(serialized), "tensorrt_version": trt.__version__,
                    **({"optimization_profile": profile} if profile else {}), **notes}
            runner = EngineRunner(_deserialize(trt, serialized), serialized, device, ctx.output_names, info)
        runner.compute_dtype = COMPUTE_DTYPES[cfg.precision]
        return runner

    def load(self, directory: Path, files: list[str], ctx: BuildContext) -> Runner:
        cfg = self.config
        trt = require("tensorrt")
        device = cuda_device(ctx.device)
        serialized = (directory / SAVED_ENGINE).read_bytes()
        saved = json.loads((directory / SAVED_IO).read_text()) if SAVED_IO in files else {}
        info = {**saved.get("info", {}), "loaded_from": str(directory), "tensorrt_version": trt.__version__}
        with torch.cuda.device(device):
            runner = EngineRunner(_deserialize(trt, serialized), serialized, device,
                                  saved.get("outputs") or ctx.output_names, info)
        runner.compute_dtype = COMPUTE_DTYPES[cfg.precision]
        return runner


def build_engine(trt: Any, path: Path, cfg: TensorRTEngineConfig, ctx: BuildContext) -> tuple[bytes, dict[str, Any]]:
    """Parse the ONNX file and build a serialized engine; returns it and the optimization
    profile set for dynamic inputs (empty when the graph is static)."""
    log = _Log.create(trt)
    builder = trt.Builder(log)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, log)
    # From the file, not bytes: the parser resolves external weight files beside it.
    if not parser.parse_from_file(str(path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)][:MAX_PARSER_ERRORS]
        raise Unsupported("TensorRT's ONNX parser rejected the model: " + " | ".join(e.strip() for e in errors))
    config = builder.create_builder_config()
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # the inspector then reports layer precisions
    if cfg.precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    if cfg.optimization_level is not None:
        config.builder_optimization_level = cfg.optimization_level
    if cfg.workspace_size:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_size)
    profile = optimization_profile(builder, network, config, ctx, cfg.max_batch_size)
    try:
        serialized = builder.build_serialized_network(network, config)
    except Exception as exc:  # noqa: BLE001 - the builder raises for some failures, returns None for others
        reraise_if_out_of_memory(exc)
        raise Unsupported(one_line("TensorRT could not build the engine", exc)) from exc
    if serialized is None:
        raise Unsupported("TensorRT could not build the engine: " + (" | ".join(log.errors[-MAX_PARSER_ERRORS:])
                                                                     or "no error logged"))
    return bytes(serialized), profile


def network_flags(trt: Any) -> int:
    """Strongly typed everywhere: TensorRT 11 has no other mode (the flag is deprecated there and
    ignored), TensorRT 10 needs the flag to obey the graph's types instead of picking its own."""
    major = int(str(trt.__version__).split(".")[0])
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 1 << int(flag) if flag is not None and major < 11 else 0


def optimization_profile(builder: Any, network: Any, config: Any, ctx: BuildContext,
                         max_batch: int | None) -> dict[str, Any]:
    """A profile for inputs with dynamic dimensions: dim 0 from 1 to the example's size (or
    max_batch), every other dynamic dim fixed at the example's size."""
    examples = dict(zip(ctx.input_names, ctx.example_inputs))
    shapes: dict[str, Any] = {}
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = tuple(tensor.shape)
        if all(d >= 0 for d in dims):
            continue
        example = examples.get(tensor.name, ctx.example_inputs[i] if i < len(ctx.example_inputs) else None)
        if example is None:
            raise Unsupported(f"input {tensor.name!r} has dynamic dims {dims} and no example to size them")
        opt = tuple(int(s) for s in example.shape)
        batch = [d < 0 and axis == 0 for axis, d in enumerate(dims)]  # the one dim that may vary
        low = tuple(1 if b else o for b, o in zip(batch, opt))
        high = tuple(max(max_batch or 0, o) if b else o for b, o in zip(batch, opt))
        profile.set_shape(tensor.name, low, opt, high)
        shapes[tensor.name] = {"min": low, "opt": opt, "max": high}
    if shapes:
        config.add_optimization_profile(profile)
    return shapes


def _deserialize(trt: Any, serialized: bytes) -> tuple[Any, Any]:
    """(engine, runtime): the runtime must outlive the engines it deserialized."""
    runtime = trt.Runtime(_Log.create(trt))
    engine = runtime.deserialize_cuda_engine(serialized)
    if engine is None:
        raise Unsupported("TensorRT could not deserialize the engine (another TensorRT release or GPU?)")
    return engine, runtime


def inspect_engine(trt: Any, engine: Any, context: Any) -> dict[str, Any]:
    """Per-layer precisions from the engine inspector, when this TensorRT has one."""
    try:
        inspector = engine.create_engine_inspector()
        inspector.execution_context = context  # resolves formats of dynamic shapes
        return layer_precisions(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    except Exception:  # noqa: BLE001 - evidence only; an engine without it still runs
        return {}


def torch_dtype(dtype: Any) -> torch.dtype:
    name = str(dtype).rsplit(".", 1)[-1]
    if name not in TORCH_DTYPES:
        raise Unsupported(f"TensorRT I/O type {name} has no torch counterpart here")
    return TORCH_DTYPES[name]


def _in_model_order(engine_outputs: list[str], output_names: list[str]) -> list[str]:
    """The engine's outputs in the model's order (the export kept the names); positional for an
    engine whose outputs carry other names."""
    if output_names and all(name in engine_outputs for name in output_names):
        return list(output_names)
    return engine_outputs


def require_int8_qdq(path: Path) -> dict[str, int]:
    """int8 here means explicit quantization: the graph must hold Q/DQ nodes TensorRT can take.
    Checked before TensorRT parses, so the reason names the fix rather than a parser error."""
    summary = qdq_summary(path)
    if not summary["quantize_linear"] and not summary["dequantize_linear"]:
        raise Unsupported("precision int8 needs an explicitly quantized (QDQ) ONNX graph: put ort_quantize_static "
                          "(activation_type='qint8', activation_symmetric=True) before tensorrt_engine")
    if summary["uint8"] or summary["nonzero_zero_points"]:
        raise Unsupported(f"TensorRT takes signed int8 Q/DQ with zero points of 0; this graph has "
                          f"{summary['uint8']} uint8 and {summary['nonzero_zero_points']} nonzero zero points "
                          "(quantize with activation_type='qint8', activation_symmetric=True, weight_symmetric=True)")
    return summary


def qdq_summary(path: Path) -> dict[str, int]:
    """Counts of QuantizeLinear / DequantizeLinear nodes, of their zero points stored as uint8,
    and of zero points that are not 0."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {t.name: t for t in graph.initializer}
    counts = {"quantize_linear": 0, "dequantize_linear": 0, "uint8": 0, "nonzero_zero_points": 0}
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        counts["quantize_linear" if node.op_type == "QuantizeLinear" else "dequantize_linear"] += 1
        zero_point = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zero_point is not None:
            counts["uint8"] += zero_point.data_type == onnx.TensorProto.UINT8
            counts["nonzero_zero_points"] += bool(numpy_helper.to_array(zero_point).any())
    return counts


def fold_int32_dequantize(path: Path, workdir: Path) -> tuple[Path, int]:
    """ONNX Runtime's QDQ quantizer stores Gemm/Conv biases as int32 with a DequantizeLinear
    (scale = input scale x weight scale); TensorRT's Q/DQ layers take 8-bit types only. Each such
    DequantizeLinear of a constant becomes the float constant it computes, (q - zero point) x
    scale, so TensorRT sees the same bias ONNX Runtime adds. Returns the graph to build and how
    many were folded (the input graph itself when none)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    folded = []
    for node in graph.node:
        source = inits.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if source is None or source.data_type != onnx.TensorProto.INT32 or node.input[1] not in inits:
            continue
        values = numpy_helper.to_array(source).astype(np.float64)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        has_zero = len(node.input) > 2 and node.input[2] in inits
        zero = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64) if has_zero else np.zeros_like(scale)
        if scale.ndim == 1 and values.ndim > 1:  # per-channel along `axis`
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * values.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        dequantized = ((values - zero) * scale).astype(numpy_helper.to_array(inits[node.input[1]]).dtype)
        graph.initializer.append(numpy_helper.from_array(dequantized, node.output[0]))
        folded.append(node)
    if not folded:
        return path, 0
    for node in folded:
        graph.node.remove(node)
    out = workdir / (path.stem + ".trt-qdq.onnx")
    onnx.save_model(model, str(out))
    return out, len(folded)


def convert_to_fp16(path: Path, workdir: Path) -> tuple[Path, dict[str, Any]]:
    """The graph with float tensors and weights in fp16, inputs and outputs left fp32 (Casts at
    the boundary), through ONNX Runtime's float16 converter: its op block list keeps ops that
    have no fp16 form (TopK, Range, ...) in fp32."""
    import onnx

    try:
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    except ImportError as exc:
        why = f"its float16 converter makes the fp16 graph ({exc})"
        raise MissingDependency("onnxruntime", "onnx", cause=why) from exc
    source = onnx.load(str(path))  # with its external weights
    try:
        converted = convert_float_to_float16(source, keep_io_types=True)
    except Exception as exc:  # noqa: BLE001 - the converter raises many types; all mean "cannot convert"
        raise Unsupported(one_line("converting the ONNX graph to fp16 failed", exc)) from exc
    out = workdir / (path.stem + ".fp16.onnx")
    # Weights over protobuf's 2 GB limit go to a data file beside the graph.
    large = converted.ByteSize() > 2**31 - 2**20
    onnx.save_model(converted, str(out), save_as_external_data=large, location=out.name + ".data" if large else None)
    kept = sorted({n.op_type for n in converted.graph.node if n.op_type in DEFAULT_OP_BLOCK_LIST})
    return out, {"graph": out.name, "fp32_ops_kept": kept}


class _Log:
    """A TensorRT logger that keeps the errors (for the `unsupported` reason) and passes warnings
    and worse to Python logging (the worker keeps stderr; stdout carries progress)."""

    @staticmethod
    def create(trt: Any) -> Any:
        class Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity: Any, msg: str) -> None:
                if int(severity) <= int(trt.ILogger.Severity.ERROR):
                    self.errors.append(msg)
                if int(severity) <= int(trt.ILogger.Severity.WARNING):
                    logging.getLogger("hone.tensorrt").warning("TensorRT: %s", msg)

        return Logger()
