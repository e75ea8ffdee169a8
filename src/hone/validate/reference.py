"""The reference: eager fp32, run twice per input set in the calling process.

Running it here, before any worker starts, turns a model that cannot run its own example
inputs into one clear InputError, with nothing written to the store. Two runs that differ mark
the workload non-deterministic; their difference widens every candidate's tolerance.

The model also runs once in float64. How far eager fp32 lands from it is this network's own
fp32 rounding error: a candidate that reorders fp32 arithmetic (fusion, other conv algorithms,
another library) may differ from eager by FP64_ERROR_MULTIPLIER times that and still be as
accurate as eager, which is the rule PyTorch's benchmark harness applies to compiled models.
assert_close's fp32 floor is meant for one op; across fifty layers it rejects correct programs.
"""

from __future__ import annotations

import copy
import dataclasses
import logging

import torch

from hone.errors import HoneError, InputError
from hone.models.workload import FlatIO, Workload, normalize_outputs
from hone.validate import metrics
from hone.validate.check import eval_outputs
from hone.validate.compare import max_abs_difference

EVAL_REFERENCE_BATCH = 32
FP64_ERROR_MULTIPLIER = 3.0
# The float64 copy doubles the model's size; skip it when that would crowd the machine.
FP64_MAX_SHARE_OF_AVAILABLE_MEMORY = 0.25

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Reference:
    output_names: list[str]
    outputs: dict[str, tuple[torch.Tensor, ...]]  # input set label -> outputs in name order
    extra_atol: dict[str, list[float]]  # label -> tolerance widening per output (see module doc)
    nondeterministic: bool
    fp32_error: dict[str, list[float]] = dataclasses.field(default_factory=dict)  # vs float64
    fp64_skipped: str | None = None  # why there is no float64 calibration
    eval_outputs: dict[str, torch.Tensor] | None = None
    score: float | None = None


def _forward(module: torch.nn.Module, label: str, tensors: dict[str, torch.Tensor]):
    try:
        with torch.inference_mode():
            return normalize_outputs(module(**tensors))
    except HoneError:
        raise
    except Exception as exc:
        specs = ", ".join(f"{n}: {str(t.dtype).removeprefix('torch.')}{list(t.shape)}" for n, t in tensors.items())
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(
            f"the model's forward raised {type(exc).__name__} on input set {label} ({specs}): {first}",
            hint="check the example inputs' shapes and dtypes against what forward() expects",
        ) from exc


def compute_reference(workload: Workload) -> Reference:
    module = workload.module.eval()
    outputs: dict[str, tuple[torch.Tensor, ...]] = {}
    extra: dict[str, list[float]] = {}
    names: list[str] | None = None
    for input_set in workload.input_sets:
        first = _forward(module, input_set.label, input_set.tensors)
        second = _forward(module, input_set.label, input_set.tensors)
        if names is None:
            names = list(first)
        elif list(first) != names:
            raise InputError(f"input set {input_set.label} gives outputs {list(first)}, others give {names}")
        outputs[input_set.label] = tuple(first[n] for n in names)
        extra[input_set.label] = max_abs_difference(outputs[input_set.label], tuple(second[n] for n in names))
    assert names is not None
    nondeterministic = any(d > 0 for diffs in extra.values() for d in diffs)
    reference = Reference(names, outputs, extra, nondeterministic)
    _calibrate_with_fp64(workload, reference)
    if workload.eval is not None:
        _check_eval_set(workload)
        flat = FlatIO(module, workload.input_names, names)
        with torch.inference_mode():
            try:
                reference.eval_outputs = eval_outputs(flat, workload.eval, EVAL_REFERENCE_BATCH, names)
            except Exception as exc:
                raise InputError(f"the model's forward raised {type(exc).__name__} on the eval set: {exc}") from exc
        fn = metrics.resolve(workload.eval.metric)
        reference.score = float(fn(reference.eval_outputs, reference.eval_outputs, workload.eval.labels))
    return reference


def _calibrate_with_fp64(workload: Workload, reference: Reference) -> None:
    """Widen each output's tolerance by FP64_ERROR_MULTIPLIER x |eager fp32 - float64|."""
    reason = _fp64_obstacle(workload.module)
    if reason is None:
        try:
            module64 = copy.deepcopy(workload.module).double().eval()
            for input_set in workload.input_sets:
                tensors = {k: v.double() if v.is_floating_point() else v for k, v in input_set.tensors.items()}
                with torch.inference_mode():
                    out64 = normalize_outputs(module64(**tensors))
                fp32 = reference.outputs[input_set.label]
                errors = [
                    float((o.double() - out64[n].double()).abs().max()) if o.is_floating_point() and o.numel() else 0.0
                    for n, o in zip(reference.output_names, fp32)
                ]
                reference.fp32_error[input_set.label] = errors
                reference.extra_atol[input_set.label] = [
                    max(nd, FP64_ERROR_MULTIPLIER * e) for nd, e in zip(reference.extra_atol[input_set.label], errors)
                ]
            return
        except Exception as exc:  # some ops have no float64 kernel; the floors still apply
            reason = f"float64 run failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    reference.fp64_skipped = reason
    log.info("no float64 calibration of tolerances: %s", reason)


def _fp64_obstacle(module: torch.nn.Module) -> str | None:
    import psutil

    size = sum(t.numel() for t in [*module.parameters(), *module.buffers()]) * 8
    available = psutil.virtual_memory().available
    if size > FP64_MAX_SHARE_OF_AVAILABLE_MEMORY * available:
        return f"a float64 copy ({size / 2**30:.1f} GiB) would not fit comfortably in memory"
    return None


def _check_eval_set(workload: Workload) -> None:
    """Same input names, and per-sample shapes and dtypes equal to the example inputs'."""
    assert workload.eval is not None
    example = workload.input_sets[0].tensors
    samples = workload.eval.samples
    if list(samples) != list(example):
        raise InputError(f"eval set inputs {list(samples)} do not match the model inputs {list(example)}")
    for name, tensor in samples.items():
        want = example[name]
        if tensor.shape[1:] != want.shape[1:] or tensor.dtype != want.dtype:
            raise InputError(
                f"eval set input {name!r} is {str(tensor.dtype).removeprefix('torch.')}{list(tensor.shape[1:])} per sample, "
                f"the example inputs are {str(want.dtype).removeprefix('torch.')}{list(want.shape[1:])}"
            )
    labels = workload.eval.labels
    if labels is not None and labels.shape[0] != len(workload.eval):
        raise InputError(f"eval set has {len(workload.eval)} samples but {labels.shape[0]} labels")
