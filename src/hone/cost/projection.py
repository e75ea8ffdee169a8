"""Which hardware: a roofline projection of a profiled model onto other targets. A PROJECTION,
a lower bound from published peaks, never a measurement; every figure it gives is labelled so.

Per op type (the profile's per-op-type FLOPs and bytes of one forward, eager fp32):

    time >= max(flops / peak(dtype), bytes / bandwidth) + calls x overhead floor

The model's latency lower bound is the sum over op types; the binding resource is the term that
holds the largest part of that sum (compute: ops whose FLOPs term is the larger; memory: ops
whose bytes term is; overhead: the fixed cost per call). Summing per op type rather than per
call can only lower the bound (max of sums <= sum of maxes).

Batch: the two profiled input sets give each op type's FLOPs and bytes as a + b x batch (weights
are read once per forward whatever the batch: `a`; activations grow with it: `b`); one profiled
set is scaled in proportion to the batch (an assumption, said). The best batch is the smallest
reaching BEST_SHARE of the asymptotic throughput (batch -> infinity), capped at MAX_BATCH and by
the target's memory (weights + the largest op's inputs and outputs per sample x batch, an
estimate).

What this leaves out, all of which makes a real run slower than the bound, except caches:
kernels below their peak, the host's dispatch running ahead of a GPU or not, data transfer to a
GPU, and a runtime that fuses ops (fewer bytes) or lowers precision (see `precision`). Caches can
serve an op's bytes faster than DRAM bandwidth, so a small model can beat a memory-bound bound.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from typing import TYPE_CHECKING, Any

from hone.cost.arithmetic import usd_per_million
from hone.errors import InputError

if TYPE_CHECKING:
    from hone.cost.targets import Target
    from hone.profiler.records import Profile

OP_COLUMNS = ("name", "dtype", "calls", "flops", "bytes", "time_s")  # one stored op row, in this order
MAX_BATCH = 256
BEST_SHARE = 0.95  # of the asymptotic throughput: "best batch"
MEMORY_HEADROOM = 0.9  # of a target's memory a projection may fill
LABEL = "projection: a lower bound from peak figures, not a measurement"
FLOAT_BYTES = {"float32": 4, "float64": 8}


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}") if x and math.isfinite(x) else x


def set_record(profile: "Profile", batch_size: int) -> dict[str, Any]:
    """The compact record of one profiled input set that a run keeps for projections: its batch
    size, wall time and, per op type, name, dtype, calls, FLOPs, bytes and time (OP_COLUMNS)."""
    return {
        "input_set": profile.input_set,
        "batch_size": int(batch_size),
        "wall_s": _sig(profile.wall_s),
        "ops": [[o.name, o.dtype, int(o.calls), int(round(o.flops)), int(round(o.bytes)), _sig(o.time_s)]
                for o in profile.ops],
    }


@dataclasses.dataclass(frozen=True)
class OpFit:
    """One op type's FLOPs and bytes per forward as a + b x batch."""

    name: str
    dtype: str
    calls: int
    flops0: float
    flops_per: float
    bytes0: float
    bytes_per: float

    def flops(self, batch: float) -> float:
        return self.flops0 + self.flops_per * batch

    def bytes(self, batch: float) -> float:
        return self.bytes0 + self.bytes_per * batch


@dataclasses.dataclass(frozen=True)
class Fit:
    ops: tuple[OpFit, ...]
    batches: tuple[int, ...]  # the profiled batch sizes it comes from
    note: str

    def memory_bytes(self, batch: int) -> float:
        """Estimated memory at `batch`: the batch-independent bytes (weights, read once) plus the
        largest op type's inputs and outputs per call per sample x batch."""
        weights = sum(o.bytes0 for o in self.ops)
        live = max((o.bytes_per / max(o.calls, 1) for o in self.ops), default=0.0)
        return weights + live * batch


def fit(records: list[dict[str, Any]]) -> Fit:
    """Each op type's FLOPs and bytes as a + b x batch, from the smallest and largest profiled
    batch sizes (set_record); one set: in proportion to its batch (a = 0)."""
    if not records:
        raise InputError("no profiled input set to project from")
    try:
        by_batch = {int(r["batch_size"]): {(op[0], op[1]): op for op in r["ops"]} for r in records}
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError(f"the stored per-op record is malformed ({type(exc).__name__}: {exc})") from None
    low, high = min(by_batch), max(by_batch)
    keys = list(dict.fromkeys([*by_batch[high], *by_batch[low]]))
    ops = []
    for key in keys:
        a, b = by_batch[low].get(key), by_batch[high].get(key)
        calls = max(int(x[2]) for x in (a, b) if x is not None)
        if high == low:
            flops, nbytes = (0.0, float(b[3]) / high), (0.0, float(b[4]) / high)  # type: ignore[index]
        else:
            flops = _line(float(a[3]) if a else 0.0, float(b[3]) if b else 0.0, low, high)
            nbytes = _line(float(a[4]) if a else 0.0, float(b[4]) if b else 0.0, low, high)
        ops.append(OpFit(key[0], key[1], calls, flops[0], flops[1], nbytes[0], nbytes[1]))
    sizes = tuple(sorted(by_batch))
    note = (f"FLOPs and bytes per op fitted as a + b x batch from batch {low} and {high}" if high != low
            else f"one profiled batch size ({high}): FLOPs and bytes scaled in proportion to the batch (an assumption)")
    return Fit(tuple(ops), sizes, note)


def _line(v_low: float, v_high: float, low: int, high: int) -> tuple[float, float]:
    """(a, b) through two points, neither negative: what grows with the batch cannot shrink."""
    slope = max((v_high - v_low) / (high - low), 0.0)
    return max(v_low - slope * low, 0.0), slope


@dataclasses.dataclass(frozen=True)
class Point:
    """The projected lower bound at one batch size on one target."""

    batch: int
    latency_s: float
    compute_s: float  # ops whose FLOPs term binds
    memory_s: float  # ops whose bytes term binds
    overhead_s: float  # calls x the fixed cost per op
    usd_per_million: float | None  # at the target's price, busy all the time

    @property
    def throughput(self) -> float:
        return self.batch / self.latency_s if self.latency_s > 0 else math.inf

    @property
    def binding(self) -> str:
        terms = {"compute": self.compute_s, "memory": self.memory_s, "overhead": self.overhead_s}
        return max(terms, key=lambda k: terms[k])

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "throughput_per_s": self.throughput, "binding": self.binding}


def at_batch(found: Fit, target: "Target", batch: int, precision: str | None = None) -> Point:
    """The lower bound at `batch`. precision "bfloat16"/"float16": float32 ops as if run in that
    dtype (its peak, half the bytes): what a lower-precision candidate could reach."""
    compute = memory = overhead = 0.0
    for op in found.ops:
        dtype, nbytes = op.dtype, op.bytes(batch)
        if precision and dtype in FLOAT_BYTES:
            nbytes *= 2 / FLOAT_BYTES[dtype]
            dtype = precision
        flops = op.flops(batch)
        peak, _ = target.peak(dtype)
        c, m = flops / peak, nbytes / target.bandwidth
        if c >= m:
            compute += c
        else:
            memory += m
        if target.kind == "cpu" or flops or nbytes:  # a GPU launches no kernel for a view
            overhead += op.calls * target.overhead_s
    latency = compute + memory + overhead
    cost = usd_per_million(batch / latency, target.usd_per_hour) if target.usd_per_hour is not None and latency > 0 else None
    return Point(batch, latency, compute, memory, overhead, cost)


def _asymptote_s(found: Fit, target: "Target", precision: str | None) -> float:
    """Seconds per sample as the batch grows without bound (fixed costs amortised away)."""
    total = 0.0
    for op in found.ops:
        dtype, per_bytes = op.dtype, op.bytes_per
        if precision and dtype in FLOAT_BYTES:
            per_bytes *= 2 / FLOAT_BYTES[dtype]
            dtype = precision
        total += max(op.flops_per / target.peak(dtype)[0], per_bytes / target.bandwidth)
    return total


@dataclasses.dataclass(frozen=True)
class Projection:
    target: "Target"
    precision: str  # "as profiled" | "bfloat16" | "float16"
    batch1: Point | None  # None: does not fit
    best: Point | None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        t = self.target
        return {
            "target": t.name, "label": t.label, "kind": t.kind, "measured_peaks": t.measured,
            "instance": t.instance, "usd_per_hour": t.usd_per_hour, "price": t.price_note,
            "precision": self.precision, "what": LABEL,
            "batch1": self.batch1.to_dict() if self.batch1 else None,
            "best": self.best.to_dict() if self.best else None,
            "notes": list(self.notes), "basis": t.basis, "source": t.source, "as_of": t.as_of,
        }  # fmt: skip


def project(found: Fit, target: "Target", precision: str | None = None, max_batch: int = MAX_BATCH) -> Projection:
    """Batch 1 and the best batch on `target`."""
    notes = []
    fallen = sorted({(precision if precision and o.dtype in FLOAT_BYTES else o.dtype) for o in found.ops
                     if target.peak(precision if precision and o.dtype in FLOAT_BYTES else o.dtype)[1]})
    if fallen:
        notes.append(f"no {', '.join(fallen)} figure for {target.name}: those ops at its float32 rate")
    limit = max_batch
    if target.memory_bytes:
        room = target.memory_bytes * MEMORY_HEADROOM
        need = found.memory_bytes(1)
        if need > room:
            notes.append(f"does not fit: needs ~{need / 2**30:.3g} GiB at batch 1 of {target.memory_bytes / 2**30:.3g} GiB")
            return Projection(target, precision or "as profiled", None, None, tuple(notes))
        per = found.memory_bytes(2) - need
        if per > 0:
            limit = max(1, min(limit, int((room - need) / per) + 1))
    first = at_batch(found, target, 1, precision)
    asymptote = _asymptote_s(found, target, precision)
    if asymptote <= 0:
        best = at_batch(found, target, limit, precision)
        notes.append(f"nothing grows with the batch: best batch is the cap, {limit}")
    else:
        wanted = BEST_SHARE / asymptote
        sizes = range(1, limit + 1)
        # Throughput never falls as the batch grows (each term per sample only shrinks): bisect.
        at = bisect.bisect_left(sizes, True, key=lambda n: at_batch(found, target, n, precision).throughput >= wanted)
        if at < len(sizes):
            best = at_batch(found, target, sizes[at], precision)
        else:
            best = at_batch(found, target, limit, precision)
            why = "memory" if limit < max_batch else f"the cap of {max_batch}"
            notes.append(f"best batch capped at {limit} by {why}: {best.throughput * asymptote:.0%} of the asymptotic "
                         "throughput")
    return Projection(target, precision or "as profiled", first, best, tuple(notes))


@dataclasses.dataclass(frozen=True)
class Check:
    """A measured p50 on this machine against the projection for it: ratio >= 1 is expected of
    eager; below 1, the bytes counted overstate what reached DRAM (caches) or the candidate fused
    or lowered precision."""

    label: str
    input_set: str
    batch: int
    measured_s: float
    projected_s: float

    @property
    def ratio(self) -> float:
        return self.measured_s / self.projected_s if self.projected_s > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ratio": self.ratio}


def check(found: Fit, machine: "Target", measured: list[tuple[str, str, int, float]]) -> list[Check]:
    """(label, input set, batch, measured p50) -> measured / projected on this machine."""
    return [Check(label, input_set, batch, p50, at_batch(found, machine, batch).latency_s)
            for label, input_set, batch, p50 in measured]
