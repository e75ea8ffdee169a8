"""Which axis of each output is the batch: where hone slices, pads and concatenates outputs.

Models do not all put the batch first. `nn.LSTM` (batch_first=False) and CTC heads give
time-major logits (T, B, C); a model may also return a per-model constant (a prior, a
vocabulary table) that has no batch axis at all. Every place that cuts padding off a batch or
joins batches (the eval loop above all) must use the axis the model really used, or it cuts the
time axis and judges every candidate, eager included, against garbage.

The axis is inferred by running the reference at two batch sizes: the axis whose size grows in
proportion to the batch is the batch axis (its size may be k x batch, a flattened (B*T, C)
output: k rows per sample); an output whose shape does not change has none. A declaration
(`EvalSet.batch_axes` or `Workload.output_batch_axes`: output name -> axis or None) overrides it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from hone.errors import InputError

BatchAxis = int | None  # None: the output does not scale with the batch (compared whole)


def another_batch(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The example inputs at batch N+1, rows repeated cyclically (dim 0 is the inputs' batch):
    integer inputs (token ids, attention masks) stay valid values, which random data would not."""
    n = int(inputs[0].shape[0])
    rows = torch.arange(n + 1, device=inputs[0].device) % n
    return tuple(t.index_select(0, rows) for t in inputs)


def infer_axis(first: torch.Tensor, first_batch: int, second: torch.Tensor, second_batch: int) -> BatchAxis | str:
    """The batch axis of one output seen at two batch sizes; None when its shape does not
    change; a string (why) when it changes but not in proportion to the batch."""
    a, b = tuple(first.shape), tuple(second.shape)
    if len(a) != len(b):
        return f"has {len(a)} dimensions at batch {first_batch} and {len(b)} at batch {second_batch}"
    changed = [d for d in range(len(a)) if a[d] != b[d]]
    if not changed:
        return None
    for d in changed:  # the first axis proportional to the batch: k rows per sample, k >= 1
        if a[d] % first_batch == 0 and a[d] * second_batch == b[d] * first_batch:
            return d
    return f"has shape {list(a)} at batch {first_batch} and {list(b)} at batch {second_batch}"


def assumed_axis(output: torch.Tensor, batch: int) -> BatchAxis:
    """Without a second batch size to compare: dim 0 when its size is the batch, else none."""
    return 0 if output.dim() >= 1 and int(output.shape[0]) == batch else None


def check_declared(
    declared: Mapping[str, BatchAxis], names: Sequence[str], outputs: Sequence[torch.Tensor], batch: int
) -> dict[str, BatchAxis]:
    """Normalised declared axes (negative counted from the end); an unknown output, an axis
    out of range or one whose size is no multiple of the batch is an InputError."""
    unknown = [n for n in declared if n not in names]
    if unknown:
        raise InputError(f"batch axes declared for {unknown}, which the model does not return",
                         hint=f"its outputs are {', '.join(names)}")
    by_name = dict(zip(names, outputs))
    checked: dict[str, BatchAxis] = {}
    for name, axis in declared.items():
        output = by_name[name]
        if axis is None:
            checked[name] = None
            continue
        if isinstance(axis, bool) or not isinstance(axis, int) or not -output.dim() <= axis < output.dim():
            raise InputError(f"batch axis {axis!r} declared for output {name!r}, which has shape {list(output.shape)}",
                             hint="give an axis index of that output, or None for an output without a batch axis")
        axis %= output.dim()
        if int(output.shape[axis]) % batch:
            raise InputError(f"output {name!r} has size {output.shape[axis]} on its declared batch axis {axis}, "
                             f"which is no multiple of the batch size {batch}")
        checked[name] = axis
    return checked


def take_valid(output: torch.Tensor, axis: BatchAxis, batch: int, valid: int) -> torch.Tensor:
    """The first `valid` samples of a padded batch of `batch` samples, along `axis`."""
    if axis is None or valid == batch:
        return output
    rows = int(output.shape[axis]) // batch  # rows per sample: 1, or T of a flattened (B*T, C)
    return output.narrow(axis, 0, valid * rows)


def join(chunks: Sequence[torch.Tensor], axis: BatchAxis) -> torch.Tensor:
    """Batches of one output joined along its batch axis; an output without one is the same
    in every batch, so the first is kept whole."""
    return chunks[0] if axis is None else torch.cat(list(chunks), dim=axis)


def batch_first(output: torch.Tensor, axis: BatchAxis) -> torch.Tensor:
    """A view with the batch axis moved to dim 0 (built-in metrics index samples there)."""
    return output if axis in (None, 0) else output.movedim(axis, 0)

