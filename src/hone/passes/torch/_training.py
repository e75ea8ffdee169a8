"""What the passes that fine-tune share (QAT, pruning's recovery): batches drawn from a set of
samples, reshuffled each pass over it, and a loss that must stay a finite scalar."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from hone.errors import InputError, Unsupported

Inputs = dict[str, torch.Tensor]


def shuffled_batches(
    samples: Inputs, labels: torch.Tensor | None, input_names: list[str], batch_size: int, steps: int, seed: int
) -> Iterator[tuple[tuple[torch.Tensor, ...], torch.Tensor | None]]:
    """`steps` batches of exactly `batch_size` samples (inputs in name order, and their labels),
    reshuffled each pass over the set; `batch_size` must not exceed the set."""
    n = int(next(iter(samples.values())).shape[0])
    generator = torch.Generator().manual_seed(seed)
    order, pos = torch.randperm(n, generator=generator), 0
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=generator), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        inputs = tuple(samples[name][idx].clone() for name in input_names)
        yield inputs, (labels[idx].clone() if labels is not None else None)


def checked_loss(loss: object, step: int, what: str, lr: float) -> float:
    """The loss's value; InputError when it is not a scalar tensor that depends on the model,
    Unsupported when it is no longer finite (the fine-tune diverged)."""
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
        raise InputError("the train step must return a scalar loss tensor that depends on the model's outputs")
    value = float(loss.detach())
    if not math.isfinite(value):
        raise Unsupported(f"{what}: the loss became {value} at step {step + 1}", hint=f"lower lr (now {lr:g})")
    return value
