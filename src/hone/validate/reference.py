"""The reference: eager fp32, run twice per input set in the calling process.

Running it here, before any worker starts, turns a model that cannot run its own example
inputs into one clear InputError, with nothing written to the store. Two runs that differ mark
the workload non-deterministic; their difference widens every candidate's tolerance.
"""

from __future__ import annotations

import dataclasses

import torch

from hone.errors import HoneError, InputError
from hone.models.workload import FlatIO, Workload, normalize_outputs
from hone.validate import metrics
from hone.validate.check import eval_outputs
from hone.validate.compare import max_abs_difference

EVAL_REFERENCE_BATCH = 32


@dataclasses.dataclass
class Reference:
    output_names: list[str]
    outputs: dict[str, tuple[torch.Tensor, ...]]  # input set label -> outputs in name order
    extra_atol: dict[str, list[float]]  # label -> run-to-run difference per output
    nondeterministic: bool
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
