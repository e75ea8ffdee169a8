"""OpenVINO's CPU (or Intel GPU) plugin, from an IR file.

Candidates: `openvino` (f32, LATENCY hint: one stream for one request), `openvino-throughput`
(f32, THROUGHPUT hint: as many streams as the plugin likes; for batched serving, timed here one
request at a time like every candidate) and `openvino-bf16`, a declared bf16 candidate validated
at bf16 tolerance; where the plugin will not compute in bf16 (no bf16 units), it says so by
settling on f32, which is read back and reported as `unsupported`. The IR is the saved artifact.

Inference precision is pinned to f32 unless configured: OpenVINO's default on a CPU with bf16
units silently runs float layers in bf16, which changes the answers the candidate is
validated on (int8 kernels still run for quantized layers either way). What ran is read back
from the compiled model: the precision and threads it settled on, and from its runtime graph
how many ops executed in each precision, so a report shows int8 really ran.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from hone.config import Config
from hone._optional import block_usage_telemetry
from hone.errors import InputError, Unsupported
from hone.passes.openvino.convert import failure_reason
from hone.plugin import Artifact, BuildContext, Claim, Variant
from hone.runtimes.base import Runner, Runtime, Shapes, admits, shapes_of

if TYPE_CHECKING:
    import openvino as ov

    from hone.hardware import Hardware
    from hone.models.workload import Workload

DEVICES = ("CPU", "GPU")  # GPU: an Intel GPU through OpenVINO's GPU plugin, never CUDA
INFERENCE_PRECISIONS = ("f32", "bf16")
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT")
# Runtime-graph nodes that hold or move data rather than compute: not counted as executed ops.
_NOT_EXECUTED = ("Const", "Input", "Output")
# The ops whose precision says whether int8 kernels ran (the CPU plugin's layer types).
COMPUTE_LAYERS = ("FullyConnected", "Convolution", "MatMul", "Deconvolution", "ScaledDotProductAttention")
_FUSED_COMPUTE = re.compile(r"/(MatMul|Convolution)(,|$)")  # a Subgraph's original ops that compute
_INT8_KERNEL = re.compile(r"[iu]8$", re.IGNORECASE)  # kernel names end in their arithmetic: _i8, _I8, _u8


@dataclasses.dataclass(frozen=True)
class OpenVinoConfig(Config):
    device: str = "CPU"
    inference_precision: str = "f32"  # what float layers compute in; "bf16" needs bf16 units
    performance_hint: str = "LATENCY"  # LATENCY: one stream for one request; THROUGHPUT: several
    # Serving: this many streams (NUM_STREAMS), and each call's batch split across as many
    # infer requests run at once, one a stream (0: the hint decides, one request a call).
    streams: int = 0

    OMIT_AT_DEFAULT = ("streams",)

    def validate(self) -> None:
        if self.streams < 0:
            raise InputError(f"streams must be 0 (the hint decides) or positive, not {self.streams}")
        if self.device not in DEVICES:
            raise InputError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        for field, allowed in (("inference_precision", INFERENCE_PRECISIONS), ("performance_hint", PERFORMANCE_HINTS)):
            if getattr(self, field) not in allowed:
                raise InputError(f"{field} must be one of {', '.join(allowed)}, not {getattr(self, field)!r}")


class OpenVinoRunner(Runner):
    """One InferRequest per compiled shape, reused: a request owns its input and output buffers.

    The IR is converted at the example's shapes (static kernels are faster than dynamic ones
    here). Inputs that differ only in the batch are served by the same IR reshaped and compiled
    for them on their first call, as torch.compile recompiles for a new shape: the conversion,
    and any calibration before it, is not repeated."""

    def __init__(self, compiled: Any, input_names: list[str], output_names: list[str], info: dict[str, Any],
                 recompile: Callable[[dict[str, list[int]]], Any] | None = None, requests: int = 1,
                 output_axes: list[int | None] | None = None):
        self.compiled = compiled
        self.input_names, self.output_names = input_names, output_names
        self._info = info
        self._recompile = recompile
        self._by_shape: dict[Shapes, tuple[Any, Any, list[int]]] = {}
        self._current = (compiled, compiled.create_infer_request(), _output_order(compiled, output_names))
        self.requests = requests  # infer requests one call's batch is split across (streams)
        self._output_axes = output_axes or []
        self._spare: dict[int, list[Any]] = {}  # id(compiled) -> its infer requests for split calls

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        rows = int(inputs[0].shape[0]) if inputs and inputs[0].dim() else 1
        if self.requests > 1 and rows > 1:
            return self._split(inputs, min(self.requests, rows))
        compiled, request, order = self._for(inputs)
        feed = {name: t.detach().cpu().numpy() for name, t in zip(self.input_names, inputs)}
        # share_inputs: the request reads the tensors' memory in place (the call is synchronous);
        # outputs are copied out of the request's buffers, which the next call overwrites.
        results = request.infer(feed, share_inputs=True).to_tuple()
        return tuple(torch.from_numpy(results[i]) for i in order)

    def _split(self, inputs: tuple[torch.Tensor, ...], parts: int) -> tuple[torch.Tensor, ...]:
        """The batch in `parts` slices, each on its own infer request, all started at once: the
        streams run them side by side (OpenVINO's way to use several streams from one caller)."""
        started = []
        for chunk in zip(*(t.tensor_split(parts) for t in inputs)):
            compiled, _, order = self._for(chunk)
            pool = self._spare.setdefault(id(compiled), [])
            used = sum(1 for c, *_ in started if c is compiled)
            if used == len(pool):
                pool.append(compiled.create_infer_request())
            request = pool[used]
            request.start_async({n: t.detach().cpu().numpy() for n, t in zip(self.input_names, chunk)},
                                share_inputs=True)
            started.append((compiled, request, order))
        pieces: list[list[torch.Tensor]] = []
        for _, request, order in started:
            request.wait()
            pieces.append([torch.from_numpy(request.get_output_tensor(i).data.copy()) for i in order])
        return tuple(_join([p[k] for p in pieces], self._axis(k)) for k in range(len(self.output_names)))

    def _axis(self, k: int) -> int | None:
        return self._output_axes[k] if k < len(self._output_axes) else 0

    def _for(self, inputs: tuple[torch.Tensor, ...]) -> tuple[Any, Any, list[int]]:
        if _accepts(self._current[0], inputs, batch_free=False) or self._recompile is None:
            return self._current
        shapes = shapes_of(inputs)
        if shapes not in self._by_shape:
            compiled = self._recompile({n: list(t.shape) for n, t in zip(self.input_names, inputs)})
            self._by_shape[shapes] = (compiled, compiled.create_infer_request(), _output_order(compiled, self.output_names))
        self._current = self._by_shape[shapes]
        return self._current

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def serves(self, inputs: tuple[torch.Tensor, ...]) -> bool:
        # The compiled model's input shapes: a dynamic dimension takes any size, and where the IR
        # can be recompiled, so does the batch (dim 0).
        return _accepts(self.compiled, inputs, batch_free=self._recompile is not None)

    def save(self, directory: Path) -> list[str]:
        """The IR (model.xml + model.bin) as compiled from, in fp32 weights."""
        import shutil

        source = Path(self._info["ir_path"])
        for suffix in (".xml", ".bin"):
            shutil.copyfile(source.with_suffix(suffix), directory / f"model{suffix}")
        return ["model.xml", "model.bin"]


class OpenVino(Runtime[OpenVinoConfig]):
    name = "openvino"
    Config = OpenVinoConfig
    description = "OpenVINO CPU plugin (f32 inference precision unless configured)"
    requires = ("openvino",)
    consumes = ("openvino",)
    default_for = ("openvino",)
    accepts_dtypes = ("*",)

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if device != "cpu":  # OpenVINO's GPU plugin is Intel's, never a CUDA device
            return []
        # openvino-bf16 on every CPU: the plugin decides which CPUs compute bf16 (avx512_bf16,
        # AMX, AVX2-VNNI-2 in recent releases), and the precision it settled on is read back.
        return [
            Variant(OpenVinoConfig(), "openvino", "OpenVINO CPU plugin, f32 pinned, LATENCY hint (one stream)",
                    cost=1.5, addresses={"overhead": Claim(0.45, "OpenVINO's C++ plugin runs the whole graph"),
                                         "memory": Claim(0.6, "the CPU plugin fuses activations and norms into convolutions and GEMMs")}),
            Variant(OpenVinoConfig(performance_hint="THROUGHPUT"), "openvino-throughput",
                    "OpenVINO CPU plugin, f32, THROUGHPUT hint (several streams)", cost=1.5, stack=False),
            Variant(OpenVinoConfig(inference_precision="bf16"), "openvino-bf16",
                    "OpenVINO CPU plugin computing float layers in bf16 (declared)", cost=1.5,
                    compute_dtype="bfloat16", stack=False,
                    addresses={"overhead": Claim(0.45, "OpenVINO's C++ plugin runs the whole graph"),
                               "memory": Claim(0.9, "bf16 activations halve the bytes each op moves", unit="bf16"),
                               "compute": Claim(1.0, "", unit="bf16")}),
        ]

    @classmethod
    def serving_variants(cls, config: OpenVinoConfig, threads: int) -> list[tuple[str, dict[str, Any]]]:
        """With two threads or more: two streams, each call's batch split across two requests
        run at once (and one stream a thread on larger machines)."""
        if config.device != "CPU" or threads < 2:
            return []
        counts = sorted({2, threads} if threads > 2 else {2})
        return [(f"{n} streams", {"performance_hint": "THROUGHPUT", "streams": n}) for n in counts]

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        return self._compile(model.path, model.compute_dtype, ctx)

    def load(self, directory: Path, files: list[str], ctx: BuildContext) -> Runner:
        return self._compile(directory / "model.xml", "float32", ctx)

    def _compile(self, ir_path: Path, ir_dtype: str, ctx: BuildContext) -> Runner:
        block_usage_telemetry()  # before openvino's first import in this process
        import openvino as ov

        cfg = self.config
        core = ov.Core()
        if cfg.device not in core.available_devices:
            available = ", ".join(core.available_devices)
            raise Unsupported(f"OpenVINO here has no {cfg.device} device (has {available})")
        properties = {
            "INFERENCE_PRECISION_HINT": cfg.inference_precision,
            "PERFORMANCE_HINT": cfg.performance_hint,
            "INFERENCE_NUM_THREADS": ctx.threads,
            **({"NUM_STREAMS": cfg.streams} if cfg.streams else {}),
        }
        try:
            compiled = core.compile_model(str(ir_path), cfg.device, properties)
        except Exception as exc:  # the plugin raises RuntimeError with a multi-line message
            raise Unsupported(failure_reason(f"OpenVINO {cfg.device} compilation", exc)) from exc
        settled = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if settled != cfg.inference_precision:  # the plugin falls back silently (no bf16 units)
            raise Unsupported(f"OpenVINO {cfg.device} runs {settled}, not the requested {cfg.inference_precision}, "
                              "on this CPU (read back from the compiled model)")
        info = {
            **compiled_info(compiled), "openvino_version": ov.__version__.split("-")[0], "ir_path": str(ir_path),
        }

        def recompile(shapes: dict[str, list[int]]) -> Any:
            reshaped = core.read_model(str(ir_path))
            reshaped.reshape(shapes)  # keyed by input name, as the requests are fed
            return core.compile_model(reshaped, cfg.device, properties)

        # Split calls across as many requests as the plugin really made streams (read back).
        requests = info["num_streams"] if cfg.streams else 1
        runner = OpenVinoRunner(compiled, ctx.input_names, ctx.output_names, info, recompile, requests,
                                list(ctx.output_batch_axes))
        if settled == "bf16" and ir_dtype == "float32":  # float layers of an fp32 IR run in bf16
            runner.compute_dtype = "bfloat16"
        return runner


def _join(pieces: list[torch.Tensor], axis: int | None) -> torch.Tensor:
    """One output from the slices' outputs: along its batch axis; one without (a per-model
    constant) is the same in every slice."""
    return pieces[0] if axis is None else torch.cat(pieces, dim=axis)


def _accepts(compiled: Any, inputs: tuple[torch.Tensor, ...], batch_free: bool) -> bool:
    """Whether `compiled`'s input ports take `inputs` (dim 0 any size when `batch_free`)."""
    def declared(port: Any) -> list[int | None] | None:
        shape = port.get_partial_shape()
        return None if shape.rank.is_dynamic else [None if d.is_dynamic else d.get_length() for d in shape]

    return admits([declared(p) for p in compiled.inputs], inputs, batch_free)


def compiled_info(compiled: "ov.CompiledModel") -> dict[str, Any]:
    """What the plugin settled on, read back rather than assumed from the request."""
    info: dict[str, Any] = {
        "device": list(compiled.get_property("EXECUTION_DEVICES")),
        "inference_precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
        "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")),
        "inference_num_threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
        "num_streams": int(compiled.get_property("NUM_STREAMS")),
    }
    if "DYNAMIC_QUANTIZATION_GROUP_SIZE" in compiled.get_property("SUPPORTED_PROPERTIES"):
        # Weight-compressed MatMuls quantize their activations on the fly in groups this size (0: off).
        info["dynamic_quantization_group_size"] = int(compiled.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE"))
    info.update(runtime_precisions(compiled.get_runtime_model()))
    return info


def runtime_precisions(runtime_model: "ov.Model") -> dict[str, Any]:
    """From the executed graph: how many nodes ran in each precision, and each compute op as
    "layer type/precision/kernel". The kernel is the evidence: "brgemm_avx512_i8" is int8
    arithmetic, while a weight-compressed FullyConnected reports its weights' precision
    (u8, i4) with an f32 kernel. The CPU plugin may fuse small MatMul chains into one
    Subgraph; it counts as a compute op when it holds a MatMul or Convolution."""
    executed: Counter[str] = Counter()
    compute: Counter[str] = Counter()
    for op in runtime_model.get_ordered_ops():
        rt_info = op.get_rt_info()
        layer, precision = _rt(rt_info, "layerType"), _rt(rt_info, "runtimePrecision")
        if layer in _NOT_EXECUTED:
            continue
        executed[precision] += 1
        fused = layer == "Subgraph" and _FUSED_COMPUTE.search(_rt(rt_info, "originalLayersNames"))
        if layer in COMPUTE_LAYERS or fused:
            compute[f"{layer}/{precision}/{_rt(rt_info, 'primitiveType')}"] += 1
    int8 = sum(n for key, n in compute.items() if _INT8_KERNEL.search(key))
    return {
        "executed_ops_by_precision": dict(sorted(executed.items())),
        "compute_ops": dict(sorted(compute.items())),
        "int8_compute_ops": int8,
        "float_compute_ops": sum(compute.values()) - int8,
    }


def _rt(rt_info: Any, key: str) -> str:
    return rt_info[key].astype(str) if key in rt_info else "?"


def _output_order(compiled: Any, output_names: list[str]) -> list[int]:
    """Index of each of hone's outputs among the compiled outputs (the conversion named them);
    positional for an IR whose outputs carry other names."""
    index = {name: i for i, port in enumerate(compiled.outputs) for name in port.get_names()}
    if all(name in index for name in output_names):
        return [index[name] for name in output_names]
    if len(compiled.outputs) != len(output_names):
        raise Unsupported(f"the OpenVINO model has {len(compiled.outputs)} outputs, the model {len(output_names)}")
    return list(range(len(output_names)))
