"""validate(): the verdict on one candidate, decided before any of its timing counts."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hone.models.workload import EvalSet
from hone.validate import metrics
from hone.validate.batch_axes import BatchAxis, batch_first, join, take_valid
from hone.validate.compare import ADVISORY_DTYPES, compare_output
from hone.validate.verdict import AccuracyBudget, MetricCheck, OutputCheck, Verdict

Predict = Callable[..., tuple[torch.Tensor, ...]]


def check_tensors(
    outputs: tuple[torch.Tensor, ...],
    reference: tuple[torch.Tensor, ...],
    output_names: list[str],
    compute_dtype: str,
    extra_atol: list[float] | None = None,
) -> tuple[OutputCheck, ...]:
    extra = extra_atol or [0.0] * len(reference)
    if len(outputs) != len(reference):
        return tuple(
            OutputCheck(n, float("inf"), float("inf"), float("nan"), 0.0, 0.0, 0, False) for n in output_names
        )
    return tuple(
        compare_output(name, out, ref, compute_dtype, x)
        for name, out, ref, x in zip(output_names, outputs, reference, extra)
    )


def eval_outputs(
    predict: Predict, eval_set: EvalSet, batch_size: int, output_names: list[str], axes: list[BatchAxis]
) -> dict[str, torch.Tensor]:
    """Run `predict` over the eval set in batches of the candidate's own batch size; padding is
    dropped and batches joined along each output's batch axis (`axes`, in output order), so the
    outputs over the whole set are laid out as the model lays them out."""
    chunks: list[list[torch.Tensor]] = [[] for _ in output_names]
    for batch, valid in eval_set.batches(batch_size):
        for i, (o, axis) in enumerate(zip(predict(*batch.values()), axes)):
            chunks[i].append(take_valid(o.detach().cpu(), axis, batch_size, valid))
    return {name: join(chunks[i], axis) for i, (name, axis) in enumerate(zip(output_names, axes))}


def check_metric(
    outputs: dict[str, torch.Tensor],
    reference_outputs: dict[str, torch.Tensor],
    eval_set: EvalSet,
    reference_score: float,
    budget: AccuracyBudget,
    axes: list[BatchAxis] | None = None,
) -> MetricCheck:
    """`axes`: each output's batch axis, in output order (None: every batch axis is dim 0)."""
    value = score(eval_set.metric, outputs, reference_outputs, eval_set.labels, axes)
    drop = reference_score - value if eval_set.higher_is_better else value - reference_score
    allowed = budget.allowed_drop(reference_score)
    also = {name: score(name, outputs, reference_outputs, eval_set.labels, axes) for name in eval_set.also}
    return MetricCheck(eval_set.metric_name, value, reference_score, allowed, drop <= allowed + 1e-12, str(budget), also)


def score(
    metric, outputs: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], labels,
    axes: list[BatchAxis] | None = None,
) -> float:
    """The metric over the eval set. A user's callable gets the outputs as the model lays them
    out (a time-major (T, B, C) output stays time-major); the built-in metrics index samples on
    dim 0, so they get views with each output's batch axis moved there."""
    fn = metrics.resolve(metric)
    if isinstance(metric, str) and axes is not None:
        outputs = {n: batch_first(t, a) for (n, t), a in zip(outputs.items(), axes)}
        reference = {n: batch_first(t, a) for (n, t), a in zip(reference.items(), axes)}
    return float(fn(outputs, reference, labels))


def _reduced_precision_sized(check: OutputCheck) -> bool:
    """Whether an fp32 output's error, relative to the output's scale, is what 8 to 11
    mantissa bits give (bf16 2^-8 .. TF32/fp16 2^-11, times a few roundings): a backend that
    silently computes in lower precision, not a wrong graph (errors of the output's own size)."""
    if check.rtol <= 0 or not 0 < check.max_abs_err < float("inf"):
        return False
    relative = check.max_abs_err / (check.atol / check.rtol)  # atol is at least rtol x the output's scale
    return 2.0**-14 <= relative <= 2.0**-4


def verdict_of(
    tensor_checks: tuple[OutputCheck, ...], metric: MetricCheck | None, compute_dtype: str, approximate: bool = False
) -> Verdict:
    """`approximate`: an earlier step changed the model beyond rounding (pruning); as for
    quantized compute, the tensor check is then advisory where a task metric decides."""
    advisory = (compute_dtype in ADVISORY_DTYPES or approximate) and metric is not None
    nonfinite = [c for c in tensor_checks if c.nonfinite]
    failed = [c for c in tensor_checks if not c.passed]
    worst = max(tensor_checks, key=lambda c: c.max_abs_err / max(c.atol, 1e-30), default=None)
    tensors_line = (
        f"max abs err {worst.max_abs_err:.2g} on {worst.name} (tol {worst.atol:.2g} + {worst.rtol:.2g}*|ref|, {compute_dtype})"
        if worst
        else "no outputs"
    )
    metric_line = (
        f"{metric.name} {metric.value:.4f} vs fp32 {metric.reference:.4f} (budget {metric.budget_text or f'{metric.budget:g}'})"
        + "".join(f", {name} {value:.4f}" for name, value in metric.also.items())
        if metric else ""
    )
    if nonfinite:
        c = nonfinite[0]
        reason = f"{c.nonfinite} NaN/Inf values in output {c.name}"
        return Verdict(False, reason, compute_dtype, tensor_checks, metric, advisory)
    if failed and not advisory:
        c = failed[0]
        if c.max_abs_err == float("inf"):
            reason = f"output {c.name}: shape or count differs from the reference"
        else:
            reason = f"output {c.name}: max abs err {c.max_abs_err:.3g} exceeds tol {c.atol:.2g} + {c.rtol:.2g}*|ref| ({compute_dtype})"
            if compute_dtype == "float32" and _reduced_precision_sized(c):
                reason += ("; an error the size of reduced-precision rounding (bf16, fp16 or TF32): "
                           "the backend computes below the fp32 it claims")
        return Verdict(False, reason, compute_dtype, tensor_checks, metric, advisory)
    if metric is not None and not metric.passed:
        reason = f"{metric.name} {metric.value:.4f} vs fp32 {metric.reference:.4f}: drop beyond budget {metric.budget_text or f'{metric.budget:g}'}"
        return Verdict(False, reason, compute_dtype, tensor_checks, metric, advisory)
    reason = "; ".join(x for x in (tensors_line, metric_line) if x)
    if advisory and failed:
        reason += " (tensor check advisory for " + ("an approximated model" if approximate and compute_dtype not in ADVISORY_DTYPES else "quantized compute") + ")"
    return Verdict(True, reason, compute_dtype, tensor_checks, metric, advisory)
