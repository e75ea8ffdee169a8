"""Latency against batch size: how a fixed per-call cost shows itself.

A model whose latency hardly grows with the batch pays mostly per call, not per sample:
dispatch overhead, or streaming the weights once per call (a GEMV reads every weight for one
token). Batching then is nearly free throughput, and the per-op roofline says which of the two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from hone.bench.measure import MeasureSettings
from hone.profiler.records import BatchPoint
from hone.profiler.timing import measure_wall

DEFAULT_MAX_BATCH = 16
# Shorter than the whole-forward measurement: this is one of several points on a curve, and the
# verdict asks only whether latency grows 1.5x or less over 4x the batch. Three calls at least:
# on a model of 1 s a call (GPT-2 at bs8) five calls per point made the sweep 13 s of a run's 180.
SCALING_SETTINGS = MeasureSettings(max_time_s=1.0, warmup_max_s=0.5, min_time_s=0.2, min_samples=3)
# Latency growing by at most this factor over at least MIN_BATCH_SPAN x more samples is
# "nearly flat": per-sample time falls almost in proportion to the batch.
FLAT_GROWTH = 1.5
MIN_BATCH_SPAN = 4


def batch_sizes(max_batch: int = DEFAULT_MAX_BATCH) -> list[int]:
    """1, 2, 4, ... up to max_batch (included when it is not a power of two)."""
    sizes, b = [], 1
    while b <= max_batch:
        sizes.append(b)
        b *= 2
    if max_batch >= 1 and sizes[-1] != max_batch:
        sizes.append(max_batch)
    return sizes


def repeat_first_sample(tensors: tuple[torch.Tensor, ...], batch: int) -> tuple[torch.Tensor, ...]:
    """Each input's first sample repeated `batch` times along dim 0 (contiguous, like real data)."""
    return tuple(t[:1].expand(batch, *t.shape[1:]).contiguous() for t in tensors)


def scaling(
    fn: Callable[..., Any], tensors: tuple[torch.Tensor, ...], *, threads: int, device: str = "cpu",
    max_batch: int = DEFAULT_MAX_BATCH, settings: MeasureSettings = SCALING_SETTINGS,
    known: dict[int, float] | None = None,
) -> list[BatchPoint]:
    """Median latency of fn at batch sizes 1, 2, 4, ... max_batch, from the first sample.
    `known`: batch -> p50 already measured (the profiled batch's whole-forward time), not re-timed."""
    points = []
    for batch in batch_sizes(max_batch):
        if known and batch in known:
            points.append(BatchPoint(batch, known[batch]))
            continue
        args = repeat_first_sample(tensors, batch)
        measurement = measure_wall(fn, args, threads=threads, device=device, settings=settings)
        points.append(BatchPoint(batch, measurement.p50))
    return points


def scaling_verdict(points: list[BatchPoint]) -> str | None:
    """A one-line finding when latency is nearly flat in the batch size, else None."""
    if len(points) < 2:
        return None
    first, last = min(points, key=lambda p: p.batch_size), max(points, key=lambda p: p.batch_size)
    if first.latency_s <= 0 or last.batch_size < MIN_BATCH_SPAN * first.batch_size:
        return None
    growth = last.latency_s / first.latency_s
    if growth > FLAT_GROWTH:
        return None
    return (
        f"overhead-bound: latency grows only x{growth:.1f} "
        f"from batch {first.batch_size} to {last.batch_size}"
    )
