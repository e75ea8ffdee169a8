"""The reference: eager fp32, run twice per input set in the calling process.

Running it here, before any worker starts, turns a model that cannot run its own example
inputs into one clear InputError, with nothing written to the store. Two runs that differ mark
the workload non-deterministic; their difference widens every candidate's tolerance.

A reference with NaN or Inf in any output stops the run here: every tolerance and metric would
be measured against it. Each output's batch axis is found here too (`validate.batch_axes`).

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
import math

import torch

from hone.errors import HoneError, InputError
from hone.models.workload import FlatIO, Workload, check_eval_set, normalize_outputs
from hone.validate import batch_axes
from hone.validate.batch_axes import BatchAxis
from hone.validate.check import eval_outputs, score
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
    batch_axes: list[BatchAxis] = dataclasses.field(default_factory=list)  # per output, in name order
    batch_axes_note: str | None = None  # how they were found, when not from two batch sizes

    @property
    def batch_axes_by_name(self) -> dict[str, BatchAxis]:
        return dict(zip(self.output_names, self.batch_axes))


def _forward(module: torch.nn.Module, label: str, tensors: dict[str, torch.Tensor], timeout_s: float | None = None):
    """The model's outputs on one input set, run contained (models._user_code: a hang past
    `timeout_s`, sys.exit or a fork is an InputError). A forward that writes into its inputs is
    refused: every candidate is called again and again on the same tensors, so its answers
    would drift from call to call and no comparison would mean anything."""
    from hone.models._user_code import user_code

    before = {name: t.clone() for name, t in tensors.items()}
    try:
        with torch.inference_mode(), user_code(f"the model's forward on input set {label}", timeout_s):
            outputs = normalize_outputs(module(**tensors))
    except HoneError:
        raise
    except Exception as exc:
        specs = ", ".join(f"{n}: {str(t.dtype).removeprefix('torch.')}{list(t.shape)}" for n, t in tensors.items())
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(
            f"the model's forward raised {type(exc).__name__} on input set {label} ({specs}): {first}",
            hint="check the example inputs' shapes and dtypes against what forward() expects",
        ) from exc
    changed = [name for name, t in tensors.items() if not torch.equal(t, before[name]) and not _same_nan(t, before[name])]
    if changed:
        raise InputError(f"the model's forward changed its input{'s' if len(changed) > 1 else ''} "
                         f"{', '.join(map(repr, changed))} in place (input set {label})",
                         hint="clone the input before writing to it (x = x.clone()); hone calls forward "
                              "repeatedly on the same tensors")
    return outputs


def _same_nan(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a.is_floating_point() or a.is_complex()) and bool(torch.equal(torch.nan_to_num(a), torch.nan_to_num(b)))


def compute_reference(workload: Workload, timeout_s: float | None = None) -> Reference:
    """Eager fp32's outputs at each input set (run twice: their difference is the model's own
    nondeterminism), the outputs' batch axes and the float64 calibration. `timeout_s`: how long
    one forward of the user's model may take (None: no limit)."""
    module = workload.module.eval()
    outputs: dict[str, tuple[torch.Tensor, ...]] = {}
    extra: dict[str, list[float]] = {}
    names: list[str] | None = None
    for input_set in workload.input_sets:
        first = _forward(module, input_set.label, input_set.tensors, timeout_s)
        _refuse_nonfinite(first, f"input set {input_set.label}")
        second = _forward(module, input_set.label, input_set.tensors, timeout_s)
        if names is None:
            names = list(first)
        elif list(first) != names:
            raise InputError(f"input set {input_set.label} gives outputs {list(first)}, others give {names}")
        outputs[input_set.label] = tuple(first[n] for n in names)
        extra[input_set.label] = max_abs_difference(outputs[input_set.label], tuple(second[n] for n in names))
    assert names is not None
    nondeterministic = any(d > 0 for diffs in extra.values() for d in diffs)
    reference = Reference(names, outputs, extra, nondeterministic)
    other_batches = _find_batch_axes(module, workload, reference)
    _calibrate_with_fp64(workload, reference)
    if workload.eval is not None:
        _check_eval_set(workload)
        flat = FlatIO(module, workload.input_names, names)
        # A model that runs only at its example batch size is evaluated at that size.
        eval_batch = EVAL_REFERENCE_BATCH if other_batches else workload.input_sets[0].batch_size
        with torch.inference_mode():
            try:
                reference.eval_outputs = eval_outputs(flat, workload.eval, eval_batch, names, reference.batch_axes)
            except Exception as exc:
                raise InputError(f"the model's forward raised {type(exc).__name__} on the eval set: {exc}") from exc
        _refuse_nonfinite(reference.eval_outputs, "the eval set")
        reference.score = score(
            workload.eval.metric, reference.eval_outputs, reference.eval_outputs, workload.eval.labels, reference.batch_axes
        )
    return reference


def _refuse_nonfinite(outputs: dict[str, torch.Tensor], where: str) -> None:
    """NaN/Inf in eager fp32's own output: no candidate can be judged against it."""
    for name, tensor in outputs.items():
        if tensor.is_floating_point() or tensor.is_complex():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise InputError(
                    f"the model's own fp32 output {name!r} has {bad} NaN/Inf values (of {tensor.numel()}) on {where}; "
                    "no candidate can be judged against it",
                    hint="check the weights and the example inputs (eager PyTorch gives these values too)",
                )


def _find_batch_axes(module: torch.nn.Module, workload: Workload, reference: Reference) -> bool:
    """Set each output's batch axis on `reference`, from two batch sizes (two input sets, or
    the first at batch N+1), declarations first. Returns whether the model runs at a batch
    size other than its first example's."""
    first = workload.input_sets[0]
    outputs = reference.outputs[first.label]
    declared = batch_axes.check_declared(workload.declared_batch_axes, reference.output_names, outputs, first.batch_size)
    other = next((s for s in workload.input_sets if s.batch_size != first.batch_size), None)
    note = None
    if other is not None:
        second, second_batch = reference.outputs[other.label], other.batch_size
    else:
        grown = batch_axes.another_batch(first.as_args())
        second_batch = int(grown[0].shape[0])
        try:
            produced = _forward(module, f"bs{second_batch}", dict(zip(first.tensors, grown)))
            second = tuple(produced[n] for n in reference.output_names)
        except (InputError, KeyError) as exc:  # KeyError: other outputs at another batch size
            second = None
            why = exc.message if isinstance(exc, InputError) else f"it returns outputs {list(produced)}"
            note = f"batch axes assumed (dim 0 where its size is the batch): at batch {second_batch} {why}"
    axes: list[BatchAxis] = []
    for i, name in enumerate(reference.output_names):
        if name in declared:
            axes.append(declared[name])
        elif second is None:
            axes.append(batch_axes.assumed_axis(outputs[i], first.batch_size))
        else:
            found = batch_axes.infer_axis(outputs[i], first.batch_size, second[i], second_batch)
            if isinstance(found, str) and workload.eval is not None:
                # Changes with the batch, but not per sample: the eval loop would join garbage.
                raise InputError(
                    f"output {name!r} {found}: hone cannot tell which of its rows belong to which sample",
                    hint=f"declare its batch axis (EvalSet(batch_axes={{{name!r}: axis}})), or None if it has none",
                )
            axes.append(None if isinstance(found, str) else found)  # nothing cuts it without an eval set
    reference.batch_axes, reference.batch_axes_note = axes, note
    return second is not None


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
                errors = [_fp64_error(o, out64[n]) for n, o in zip(reference.output_names, fp32)]
                reference.fp32_error[input_set.label] = errors
                reference.extra_atol[input_set.label] = [
                    max(nd, FP64_ERROR_MULTIPLIER * e) for nd, e in zip(reference.extra_atol[input_set.label], errors)
                ]
            return
        except Exception as exc:  # some ops have no float64 kernel; the floors still apply
            reason = f"float64 run failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    reference.fp64_skipped = reason
    log.info("no float64 calibration of tolerances: %s", reason)


def _fp64_error(fp32: torch.Tensor, fp64: torch.Tensor) -> float:
    """|fp32 - fp64| at most; 0 (the floors apply) where float64 itself overflows to NaN/Inf,
    so a tolerance never becomes NaN."""
    if not fp32.is_floating_point() or not fp32.numel():
        return 0.0
    error = float((fp32.double() - fp64.double()).abs().max())
    return error if math.isfinite(error) else 0.0


def _fp64_obstacle(module: torch.nn.Module) -> str | None:
    import psutil

    size = sum(t.numel() for t in [*module.parameters(), *module.buffers()]) * 8
    available = psutil.virtual_memory().available
    if size > FP64_MAX_SHARE_OF_AVAILABLE_MEMORY * available:
        return f"a float64 copy ({size / 2**30:.1f} GiB) would not fit comfortably in memory"
    return None


def _check_eval_set(workload: Workload) -> None:
    """The eval set fits the model's inputs and has a label per sample (the loaders' own check,
    again here for callers that build a Workload without Workload.check_data)."""
    assert workload.eval is not None
    check_eval_set("eval set", workload.eval, workload.input_sets[0].tensors)
