"""TorchScript: torch.jit.trace or torch.jit.script, then torch.jit.freeze and
torch.jit.optimize_for_inference.

Tracing records the ops that one example ran. Python control flow that depends on shapes or
values is baked in, silently: the tracer only warns when it turns a tensor into a Python value.
So every trace is checked at a second batch size (the example's rows repeated to batch N+1)
against eager. A trace that differs there is still a valid candidate at the example's exact
shape (that is what validation and timing use), so it is not rejected: the runner's info says
`trace_generalizes: False` with what differed, the tracer's warnings are kept beside it, and a
warning is logged, so the report can tell the user the artifact is shape-specialised.

Scripting compiles the Python source and keeps the control flow, but accepts only a subset of
Python. FlatIO's `forward(*tensors)` with its `**kwargs` call is outside it, so the user's own
module (FlatIO's inner one) is scripted and its outputs are named outside the script, in the
runner. Many models (transformers among them) do not script; that is `Unsupported`, with the
compiler's first line.

What ran is read back from the final module: whether weights are still attributes (freezing
inlines them as constants), how many graph nodes remain, and how many are oneDNN (mkldnn) ops,
which is what optimize_for_inference converts convolutions to on CPU.

The saved form is the traced or scripted module before freezing: a module that has been through
optimize_for_inference on CPU holds oneDNN tensor constants, which torch.jit.save writes but
torch.jit.load cannot read back ("required keyword attribute 'value' is undefined"). Freezing and
optimizing are deterministic and take milliseconds, so `load` re-applies them from the config.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hone.config import Config
from hone.errors import InputError, Unsupported
from hone.models.workload import FlatIO, normalize_outputs
from hone.plugin import Artifact, BuildContext, Claim, Variant
from hone.runtimes._batch import check_at_another_batch, first_line, shorten
from hone.runtimes.base import Runner, Runtime

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

log = logging.getLogger(__name__)

METHODS = ("trace", "script")
SAVED_MODULE = "model.pt"
_EXTRA = "hone.json"  # a TorchScript archive's extra file: how to call the module, its I/O names
_WARNING_SAMPLES = 3  # distinct tracer warnings kept in the info
SUMMARY_CHECK_CHARS = 80  # how much of the batch N+1 check a summary quotes


@dataclasses.dataclass(frozen=True)
class TorchScriptConfig(Config):
    method: str = "trace"
    # Inline weights and attributes as constants: the graph optimizer can then fold and fuse them.
    freeze: bool = True
    # Conv-BN folding, oneDNN layouts for CPU convolutions, and more; it freezes the module
    # itself, so it implies freezing whatever `freeze` says (the info records it).
    optimize_for_inference: bool = True

    def validate(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"torchscript method {self.method!r} is not one of {', '.join(METHODS)}")


class TorchScriptRunner(Runner):
    """Calls a ScriptModule. `named`: the module is the user's own (scripted), called with the
    inputs by name and its outputs flattened to names here; otherwise it is a traced FlatIO,
    called positionally, returning the outputs in order. `source` is the module as traced or
    scripted, before freezing: what `save` writes (see the module docstring)."""

    def __init__(
        self,
        module: torch.jit.ScriptModule,
        source: torch.jit.ScriptModule,
        call: dict[str, Any],
        device: str,
        info: dict[str, Any],
    ):
        self.module = module
        self.source = source
        self.named = bool(call["named"])
        self.input_names = list(call["input_names"])
        self.output_names = list(call["output_names"])
        self.device = device
        self._info = info

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        if not self.named:
            return self.module(*inputs)
        outputs = normalize_outputs(self.module(**dict(zip(self.input_names, inputs))))
        return tuple(outputs[name] for name in self.output_names)

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def serves(self, inputs: tuple[torch.Tensor, ...]) -> bool:
        # A script keeps the control flow: any shape the model takes. A trace froze it at the
        # example's shapes: other shapes only where the batch N+1 check found it generalises.
        # (The check varied the batch only: the other dimensions stay the built ones.)
        if self._info.get("method", "trace") == "script":
            return True
        if self._info.get("trace_generalizes") is True:
            built = self.built_for
            return not built or (len(inputs) == len(built)
                                 and all(tuple(t.shape[1:]) == shape[1:] for t, shape in zip(inputs, built)))
        return super().serves(inputs)

    def summary(self) -> list[str]:
        if self._info.get("trace_generalizes") is False:
            return [f"trace does not generalise: {shorten(str(self._info.get('trace_check', '')), SUMMARY_CHECK_CHARS)}"]
        return []

    def save(self, directory: Path) -> list[str]:
        # A TorchScript archive holds code and tensors, no pickled Python objects: torch.jit.load
        # runs no arbitrary code. The call convention rides along as an extra file.
        call = {"named": self.named, "input_names": self.input_names, "output_names": self.output_names}
        extra = {_EXTRA: json.dumps({"call": call, "build": _saved_facts(self._info)})}
        torch.jit.save(self.source, str(Path(directory) / SAVED_MODULE), _extra_files=extra)
        return [SAVED_MODULE]


class TorchScript(Runtime[TorchScriptConfig]):
    name = "torchscript"
    Config = TorchScriptConfig
    description = "TorchScript (trace or script), frozen and optimized for inference"
    devices = ("cpu", "cuda")
    # TorchScript runs torch's quantized eager modules, and a loaded TorchScript archive
    # ("torchscript"), which it freezes and optimizes as scripted.
    consumes = ("torch", "torch-eager-only", "torchscript")
    accepts_dtypes = ("*",)
    keeps = ("channels_last",)

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if fmt == "torchscript":  # already scripted: tracing it again would only freeze its control flow
            # No claim: the profiler's advice lists every claiming variant of every format, and
            # this one applies only to a workload that is a TorchScript archive.
            return [Variant(TorchScriptConfig(method="script"), "torchscript-frozen",
                            "the TorchScript archive frozen and optimized for inference (torch.jit.freeze, "
                            "optimize_for_inference)", cost=1.5, stack=False)]
        return [
            Variant(TorchScriptConfig(method="trace"), "torchscript-trace",
                    "TorchScript trace: no Python dispatch per op, frozen weights", cost=1.5,
                    addresses={"overhead": Claim(0.4, "the TorchScript interpreter skips Python per module")},
                    stack=False),
            Variant(TorchScriptConfig(method="script"), "torchscript-script",
                    "TorchScript script: keeps control flow, frozen weights", cost=1.5, stack=False),
        ]

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        cfg = self.config
        module = model.module.to(ctx.device).eval()
        info: dict[str, Any] = {"backend": "torchscript", **dataclasses.asdict(cfg)}
        start = time.perf_counter()
        if cfg.method == "trace":
            scripted, tracer_warnings = _trace(module, ctx.example_inputs)
            call = {"named": False, "input_names": ctx.input_names, "output_names": ctx.output_names}
            info.update(tracer_warnings)
        else:
            scripted, call = _script(module, ctx)
        info[f"{cfg.method}_s"] = round(time.perf_counter() - start, 3)

        start = time.perf_counter()
        optimized, applied = _optimize(scripted, cfg)
        info["applied"] = [cfg.method, *applied]
        info["optimize_s"] = round(time.perf_counter() - start, 3)
        runner = TorchScriptRunner(optimized, scripted, call, ctx.device, info)
        _check_output_names(runner, ctx)

        if cfg.method == "trace":
            generalizes, message = check_at_another_batch(runner, module, ctx.example_inputs, ctx.output_names,
                                                          model.compute_dtype, ctx.output_batch_axes)
            info["trace_generalizes"] = generalizes
            info["trace_check"] = message
            if generalizes is False:
                log.warning("torchscript trace is valid only at the example's shape: %s", message)
        info.update(graph_facts(optimized))
        info["intra_op_threads"] = torch.get_num_threads()
        return runner

    def load(self, directory: Path, files: list[str], ctx: BuildContext) -> Runner:
        extra = {_EXTRA: ""}
        module = torch.jit.load(str(Path(directory) / files[0]), map_location=ctx.device, _extra_files=extra)
        saved = json.loads(extra[_EXTRA])
        optimized, applied = _optimize(module.eval(), self.config)
        info = {**saved["build"], "backend": "torchscript", "loaded_from": files[0],
                "applied": [saved["build"].get("method", "?"), *applied], **graph_facts(optimized),
                "intra_op_threads": torch.get_num_threads()}
        return TorchScriptRunner(optimized, module, saved["call"], ctx.device, info)


def _trace(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """torch.jit.trace, keeping what the tracer warned about: each TracerWarning is a Python
    value computed from a tensor (a branch, a loop bound), i.e. control flow the trace froze.
    check_trace is off: it re-runs the same inputs (it cannot see a shape-specialised trace) and
    raises on benign differences; the batch N+1 check after the build is the one that can."""
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        try:
            traced = torch.jit.trace(module, inputs, check_trace=False, strict=False)
        except Exception as exc:
            raise Unsupported(f"torch.jit.trace failed: {first_line(exc)}") from exc
    tracer = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    samples = list(dict.fromkeys(f"{_first_sentence(w.message)} ({Path(w.filename).name}:{w.lineno})" for w in tracer))
    return traced, {"tracer_warnings": len(tracer), "tracer_warning_samples": samples[:_WARNING_SAMPLES]}


def _script(module: torch.nn.Module, ctx: BuildContext) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """Script the user's module (inside FlatIO) and call it by input name; a module a pass
    wrapped is scripted whole and called positionally."""
    target = module.module if isinstance(module, FlatIO) else module
    try:
        scripted = torch.jit.script(target)
    except Exception as exc:
        raise Unsupported(f"torch.jit.script failed on {type(target).__name__}: {first_line(exc)}") from exc
    call = {"named": target is not module, "input_names": ctx.input_names, "output_names": ctx.output_names}
    return scripted, call


def _optimize(scripted: torch.jit.ScriptModule, cfg: TorchScriptConfig) -> tuple[torch.jit.ScriptModule, list[str]]:
    applied = []
    if cfg.freeze:
        try:
            scripted = torch.jit.freeze(scripted.eval())
        except Exception as exc:
            raise Unsupported(f"torch.jit.freeze failed: {first_line(exc)}") from exc
        applied.append("freeze")
    if cfg.optimize_for_inference:
        try:
            scripted = torch.jit.optimize_for_inference(scripted.eval())
        except Exception as exc:
            raise Unsupported(f"torch.jit.optimize_for_inference failed: {first_line(exc)}") from exc
        if not cfg.freeze:
            applied.append("freeze (by optimize_for_inference)")
        applied.append("optimize_for_inference")
    return scripted, applied


def _check_output_names(runner: TorchScriptRunner, ctx: BuildContext) -> None:
    """A scripted module may return its outputs under other names than eager did (a scripted
    dict, tuple or ModelOutput); the runner must find every one."""
    if not runner.named:
        return
    with torch.inference_mode():
        outputs = normalize_outputs(runner.module(**dict(zip(runner.input_names, ctx.example_inputs))))
    missing = [name for name in ctx.output_names if name not in outputs]
    if missing:
        raise Unsupported(f"the scripted module returns {sorted(outputs)}, eager returned {ctx.output_names}")


def graph_facts(module: torch.jit.ScriptModule) -> dict[str, Any]:
    """Read back from the module that runs: weights still held as attributes (0 once frozen),
    graph size, and the oneDNN ops optimize_for_inference put in."""
    nodes = list(module.inlined_graph.nodes())
    return {
        "weights_as_attributes": sum(1 for _ in module.parameters()),
        "graph_nodes": len(nodes),
        "mkldnn_ops": sum(1 for n in nodes if "mkldnn" in n.kind().lower()),
    }


def _first_sentence(message: Warning | str) -> str:
    text = str(message).strip()
    end = text.find(". ")
    return text[: end + 1] if end > 0 else text


def _saved_facts(info: dict[str, Any]) -> dict[str, Any]:
    """The build facts that describe the saved module (not timings of this build)."""
    keys = ("method", "freeze", "optimize_for_inference", "applied", "trace_generalizes", "trace_check",
            "tracer_warnings", "tracer_warning_samples")
    return {k: info[k] for k in keys if k in info}
