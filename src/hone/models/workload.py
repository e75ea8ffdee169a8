"""What hone optimizes: a module, named example inputs per batch size, and optionally an eval set.

Inputs are always named (dict name -> tensor, in forward-argument order) and outputs are always
normalised to named tensors (`normalize_outputs`), so every backend sees the same flat I/O:
ONNX needs names, the validator compares output by output, the report names them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from hone.errors import InputError

Inputs = dict[str, torch.Tensor]
Outputs = dict[str, torch.Tensor]
# metric(outputs over the eval set, fp32 reference outputs over the eval set, labels) -> score
MetricFn = Callable[[Outputs, Outputs, "torch.Tensor | None"], float]


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def of(cls, name: str, tensor: torch.Tensor) -> "TensorSpec":
        return cls(name, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."))

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype}[{', '.join(map(str, self.shape))}]"


@dataclasses.dataclass
class InputSet:
    """One set of example inputs (one batch size). `label` names it in tables: "bs8"."""

    label: str
    tensors: Inputs

    @property
    def batch_size(self) -> int:
        return int(next(iter(self.tensors.values())).shape[0])

    def specs(self) -> list[TensorSpec]:
        return [TensorSpec.of(n, t) for n, t in self.tensors.items()]

    def as_args(self) -> tuple[torch.Tensor, ...]:
        return tuple(self.tensors.values())


@dataclasses.dataclass
class EvalSet:
    """A held-out set and the task metric that judges a candidate on it.

    `samples` stacks N samples along dim 0 per input name. `metric` is the name of a built-in
    metric (hone.validate.metrics) or a picklable callable with the MetricFn signature.
    `higher_is_better` and the accuracy budget decide pass/fail against the fp32 score.

    A callable metric receives each output over the whole set with the batch axis where the
    model put it: time-major (T, B, C) logits arrive as (T, N, C), an output without a batch
    axis (a per-model constant) arrives once, as the model returned it. Built-in metrics receive
    views with the batch axis moved to dim 0. hone infers each output's batch axis by running
    the model at two batch sizes; `batch_axes` (output name -> axis, or None for no batch axis)
    overrides that for the outputs it names.
    """

    samples: Inputs
    metric: str | MetricFn
    labels: torch.Tensor | None = None
    higher_is_better: bool = True
    description: str = ""
    # Further metrics reported beside the gating one (built-in names), never deciding.
    also: tuple[str, ...] = ()
    batch_axes: Mapping[str, int | None] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return int(next(iter(self.samples.values())).shape[0])

    @property
    def metric_name(self) -> str:
        return self.metric if isinstance(self.metric, str) else getattr(self.metric, "__name__", "metric")

    def batches(self, batch_size: int) -> Iterator[tuple[Inputs, int]]:
        """Batches of exactly `batch_size` (a compiled candidate may be shape-specialised):
        the last one is padded by repeating its final sample; the int says how many are real."""
        n = len(self)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            batch = {k: v[start:stop] for k, v in self.samples.items()}
            valid = stop - start
            if valid < batch_size:
                pad = batch_size - valid
                batch = {k: torch.cat([v, v[-1:].expand(pad, *v.shape[1:])]) for k, v in batch.items()}
            yield batch, valid


# step(model, inputs in name order, labels or None) -> scalar loss. `model` takes the inputs
# positionally and returns its outputs as a tuple in output-name order.
TrainStep = Callable[[torch.nn.Module, tuple[torch.Tensor, ...], "torch.Tensor | None"], torch.Tensor]


@dataclasses.dataclass
class TrainSet:
    """Data and a loss for quantization-aware training (QAT fine-tunes through `step`).

    `samples` stacks N samples on dim 0 per input name, like the eval and calibration sets;
    `step` must be picklable (a module-level function): workers receive it. Never the eval
    split, for the same reason as calibration."""

    samples: Inputs
    step: TrainStep
    labels: torch.Tensor | None = None
    description: str = ""

    def __len__(self) -> int:
        return int(next(iter(self.samples.values())).shape[0])


@dataclasses.dataclass
class Workload:
    """A loaded model ready for optimization. Built by hone.models.load_model or from a live module."""

    name: str
    module: torch.nn.Module
    input_sets: list[InputSet]
    eval: EvalSet | None = None
    source: str = "<live module>"  # the model spec it came from, for the report and the store
    task: str = ""
    description: str = ""
    # Python files the module's classes live in (a `file.py:factory` source): a worker imports
    # them under the same module name before unpickling the module.
    user_files: dict[str, str] = dataclasses.field(default_factory=dict)
    # Representative inputs for calibrating quantization (samples stacked on dim 0, same names as
    # the inputs). Never the eval split: calibrating on the data that judges accuracy would hide
    # exactly the error the gate is there to catch.
    calibration: Inputs | None = None
    calibration_description: str = ""
    train: TrainSet | None = None  # for QAT; without it QAT is not proposed
    # Output name -> its batch axis (None: it has none), where inference from two batch sizes
    # would be wrong or cannot run; an eval set's own `batch_axes` take precedence.
    output_batch_axes: dict[str, int | None] = dataclasses.field(default_factory=dict)
    # How it was loaded, recorded with the run: {"format": "onnx", "trust_pickle": True,
    # "input_shapes": {...}, "calibration_file": ...}. Loaders add what a reader of the run
    # must know to trust or reproduce it; what they had to assume goes in "warnings" (a list of
    # lines), which the run also says among its own warnings.
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    # The artifact format every recipe starts from (search.compose): "torch" for a module;
    # a model file that is not a Python module says its own ("onnx", "torchscript"). Its
    # `module` then runs the file as its baseline does (for the reference and the profile) and
    # gives build_recipe the file as the first artifact (`source_artifact(ctx)`).
    source_format: str = "torch"

    @property
    def input_names(self) -> list[str]:
        return list(self.input_sets[0].tensors)

    @property
    def declared_batch_axes(self) -> dict[str, int | None]:
        return {**self.output_batch_axes, **(dict(self.eval.batch_axes) if self.eval is not None else {})}

    def input_set(self, label: str) -> InputSet:
        for s in self.input_sets:
            if s.label == label:
                return s
        raise KeyError(label)

    def calibration_samples(self, limit: int) -> tuple[tuple[torch.Tensor, ...], str | None]:
        """Up to `limit` calibration samples (inputs in name order, stacked on dim 0), and a
        warning when they are only the example inputs (no calibration set was given)."""
        if self.calibration is not None:
            samples, warning = self.calibration, None
        else:
            samples = {n: torch.cat([s.tensors[n] for s in self.input_sets]) for n in self.input_names}
            warning = (
                "no calibration set: quantization is calibrated on the example inputs, which may not "
                "represent real data; scales fitted to them can mislead (pass a calibration set)"
            )
        return tuple(samples[name][:limit] for name in self.input_names), warning

    def check_data(self) -> None:
        """The example inputs hold no NaN, and calibration, eval and train sets fit the model's
        inputs: checked before any work, so a wrong shape is one clear error instead of a failure
        inside every quantizer. (Inf is allowed in example inputs: additive attention masks.)"""
        for input_set in self.input_sets:
            for name, t in input_set.tensors.items():
                nan = int(torch.isnan(t).sum()) if t.is_floating_point() or t.is_complex() else 0
                if nan:
                    raise InputError(f"example input {name!r} at {input_set.label} has {nan} NaN values (of {t.numel()})",
                                     hint="a NaN input makes every comparison with the reference meaningless; give finite inputs")
        example = self.input_sets[0].tensors
        for what, samples in (("calibration set", self.calibration), ("train set", self.train and self.train.samples)):
            if samples is not None:
                check_samples(what, samples, example)
        if self.eval is not None:
            check_eval_set("eval set", self.eval, example)
        if self.train is not None and self.train.labels is not None and len(self.train.labels) != len(self.train):
            raise InputError(f"train set has {len(self.train)} samples but {len(self.train.labels)} labels")

    @property
    def has_4d_float_input(self) -> bool:
        return any(t.dim() == 4 and t.is_floating_point() for t in self.input_sets[0].tensors.values())


def check_samples(what: str, samples: Inputs, example: Inputs) -> None:
    """`samples` (N stacked on dim 0 per input name) fit the model's `example` inputs: the same
    names, per-sample shapes and dtypes, and no NaN/Inf (a NaN in calibration data poisons every
    range fitted to it; in eval data, the fp32 score). `what` names the data in each error."""
    if not isinstance(samples, Mapping) or set(samples) != set(example):
        given = sorted(samples) if isinstance(samples, Mapping) else type(samples).__name__
        raise InputError(
            f"{what} has inputs {given}, the model takes {list(example)}",
            hint="give a dict input name -> tensor with samples stacked on dim 0",
        )
    counts = {int(t.shape[0]) if t.dim() else 0 for t in samples.values()}
    if len(counts) != 1 or 0 in counts:
        raise InputError(f"{what}: every input needs the same number of samples (>0) on dim 0, got {sorted(counts)}")
    for name, want in example.items():
        got = samples[name]
        if got.dim() != want.dim() or tuple(got.shape[1:]) != tuple(want.shape[1:]):
            raise InputError(
                f"{what}: input {name!r} has shape {list(got.shape)}, the model's example input is "
                f"{list(want.shape)}: every dimension but the first (samples) must match",
            )
        if got.dtype != want.dtype:
            raise InputError(f"{what}: input {name!r} is {got.dtype}, the model's example input is {want.dtype}",
                             hint=f"convert the samples to {str(want.dtype).removeprefix('torch.')}")
        if got.is_floating_point() or got.is_complex():
            bad = int((~torch.isfinite(got)).sum())
            if bad:
                raise InputError(f"{what}: input {name!r} has {bad} NaN/Inf values (of {got.numel()})",
                                 hint="drop or fix those samples")


def check_eval_set(what: str, eval_set: "EvalSet", example: Inputs) -> None:
    """An eval set's samples fit the inputs (check_samples), it has one label per sample, and
    the built-in top1 gets what it compares with: one integer class index per sample (labels
    of another shape would broadcast against the predictions and score nonsense)."""
    check_samples(what, eval_set.samples, example)
    labels = eval_set.labels
    if labels is not None and (labels.dim() == 0 or labels.shape[0] != len(eval_set)):
        count = labels.shape[0] if labels.dim() else "scalar"
        raise InputError(f"{what} has {len(eval_set)} samples but {count} labels", hint="give one label per sample")
    if eval_set.metric == "top1":
        if labels is None:
            raise InputError(f"{what}: metric top1 needs labels",
                             hint="give class labels, or a metric that compares with fp32's outputs (top1_agreement)")
        if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise InputError(
                f"{what}: top1 labels are {str(labels.dtype).removeprefix('torch.')}{list(labels.shape)}, "
                f"expected one integer class index per sample (int64[{len(eval_set)}])",
            )


def name_inputs(module: torch.nn.Module, example_inputs: Any) -> Inputs:
    """Normalise user example inputs (tensor, tuple/list of tensors, dict) to named tensors.

    Positional inputs take the names of forward()'s parameters, so the ONNX graph and the
    report use the names the user wrote.
    """
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if isinstance(example_inputs, Mapping):
        named = dict(example_inputs)
    elif isinstance(example_inputs, Sequence) and not isinstance(example_inputs, (str, bytes)):
        params = _forward_parameter_names(module)
        if len(example_inputs) > len(params):
            raise InputError(
                f"{len(example_inputs)} example inputs given but forward() takes {len(params)} "
                f"({', '.join(params) or 'none'})"
            )
        named = dict(zip(params, example_inputs))
    else:
        raise InputError(
            f"example inputs must be a Tensor, a tuple of Tensors or a dict of name -> Tensor, "
            f"not {type(example_inputs).__name__}"
        )
    for name, value in named.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise InputError(f"input name {name!r} is not a Python identifier")
        if not isinstance(value, torch.Tensor):
            raise InputError(f"example input {name!r} must be a torch.Tensor, not {type(value).__name__}")
        if value.dim() == 0:
            raise InputError(f"example input {name!r} is a scalar; hone needs a batch dimension first")
    if not named:
        raise InputError("no example inputs given")
    batch_sizes = {t.shape[0] for t in named.values()}
    if len(batch_sizes) != 1:
        raise InputError(f"example inputs disagree on the batch size (dim 0): {sorted(batch_sizes)}")
    return named


def _forward_parameter_names(module: torch.nn.Module) -> list[str]:
    import inspect

    sig = inspect.signature(module.forward)
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in sig.parameters.values() if p.kind in kinds]


def normalize_outputs(out: Any) -> Outputs:
    """Flatten whatever forward() returned (tensor, tuple, dict, HF ModelOutput) to named tensors.

    Nested containers get dotted names ("hidden_states.3"); None entries are dropped (HF outputs
    carry many). Anything else that is not a tensor is an error: we cannot compare it.
    """
    flat: Outputs = {}

    def visit(prefix: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, torch.Tensor):
            flat[prefix or "output"] = value
        elif isinstance(value, Mapping) or hasattr(value, "to_tuple") and hasattr(value, "keys"):
            for key in value.keys():
                visit(f"{prefix}.{key}" if prefix else str(key), value[key])
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                visit(f"{prefix}.{i}" if prefix else f"output_{i}", item)
        else:
            raise InputError(
                f"model output {prefix or 'output'!r} is a {type(value).__name__}; hone compares tensors only",
                hint="return tensors (or tuples/dicts of them); for transformers models pass use_cache=False",
            )

    visit("", out)
    if not flat:
        raise InputError("the model returned no tensors")
    return flat


class FlatIO(torch.nn.Module):
    """Presents any module as forward(*tensors) -> tuple(tensors) with fixed names and order.

    Every pass and runtime sees this shape: exporters and compilers handle a flat tuple of
    tensors more reliably than HF ModelOutputs, and names stay attached outside.
    """

    def __init__(self, module: torch.nn.Module, input_names: list[str], output_names: list[str]):
        super().__init__()
        self.module = module
        self.input_names = list(input_names)
        self.output_names = list(output_names)

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = normalize_outputs(self.module(**dict(zip(self.input_names, args))))
        return tuple(outputs[name] for name in self.output_names)

