"""Classify op calls against this machine's measured roofline, and split wall time by bound.

An op with arithmetic intensity (FLOP per byte) at or above the ridge point (roof FLOP/s over
bandwidth B/s) can at best reach the compute roof: "compute"; below it the bandwidth caps it
first: "memory". A short call that reaches a small share of both roofs is neither: its time is
dispatch, allocation and launch, "overhead" (a GPT-2 decode step has hundreds of such calls);
so is a call of any length that reaches almost none of either roof (fixed per-call setup).

Without measured peaks there is no ridge: calls are only told apart by time (short ones are
"overhead", the rest unclassified, bound ""), and the shares are overhead vs "unclassified".
"""

from __future__ import annotations

from collections import defaultdict

from hone.hardware.peaks import Peaks
from hone.profiler.join import TimedCall
from hone.profiler.kernels import gpu_unit
from hone.profiler.records import OpStat

# Per-call time under which an op may be dispatch-dominated. An eager CPU aten call costs a
# few µs before any arithmetic (Python binding, dispatcher, allocator, output checks); at
# 20 µs that fixed cost is still a large share. CUDA times are kernel times, where launch
# latency dominates below a few µs.
OVERHEAD_CALL_S = {"cpu": 20e-6, "cuda": 5e-6}
# ... and attains under this share of both its compute roof and the bandwidth: neither the
# arithmetic nor the memory traffic explains its time.
OVERHEAD_ATTAINED = 0.10
# A call of any length that attains under this share of both roofs is fixed per-call cost too
# (kernel setup, reorders, allocation, thread wake-up): a batch-1 convolution on an 8x8 image
# takes 90 µs at 0.1 % of either roof. Lower precision does not shorten it; a runtime that
# prepares its kernels once (ONNX Runtime, OpenVINO, a compiler) does.
FIXED_COST_ATTAINED = 0.01
TOP_CALLS = 15  # individual calls listed in Profile.top_ops
UNCLASSIFIED = "unclassified"  # the shares key for op time without peaks to classify it
GIGA = 1e9


def roof_flops(peaks: Peaks, dtype: str) -> float:
    """The compute roof (FLOP/s, OP/s for int8) for ops on `dtype`. Half precisions use the
    bf16 GEMM peak (fp16 has no separate measurement; on CPUs both go through the same
    units), else fp32; non-float ops (indices, masks) run on the fp32 units at best."""
    if dtype in ("bfloat16", "float16") and peaks.bf16_gflops:
        return peaks.bf16_gflops * GIGA
    if dtype in ("int8", "uint8") and peaks.int8_gops:
        return peaks.int8_gops * GIGA
    return peaks.fp32_gflops * GIGA


def ridge(peaks: Peaks, dtype: str) -> float:
    """FLOP per byte where the compute roof meets the bandwidth roof."""
    return roof_flops(peaks, dtype) / (peaks.bandwidth_gbs * GIGA)


def overhead_call_s(device: str) -> float:
    return OVERHEAD_CALL_S["cuda" if device.startswith("cuda") else "cpu"]


def classify(
    flops: float, nbytes: float, time_s: float, dtype: str, peaks: Peaks | None, *, calls: int = 1, device: str = "cpu"
) -> tuple[str, float | None]:
    """(bound, pct_of_peak) of `calls` calls taking `time_s` together."""
    per_call = time_s / calls if calls else 0.0
    short = 0 < per_call < overhead_call_s(device)
    if peaks is None:
        return ("overhead" if short else ""), None
    roof, bandwidth = roof_flops(peaks, dtype), peaks.bandwidth_gbs * GIGA
    compute_pct = flops / time_s / roof if time_s > 0 else None
    memory_pct = nbytes / time_s / bandwidth if time_s > 0 else None
    if not flops and not nbytes:
        return "overhead", 0.0 if time_s > 0 else None  # views, metadata: nothing but dispatch
    if compute_pct is not None and memory_pct is not None:
        attained = max(compute_pct, memory_pct)
        if attained < FIXED_COST_ATTAINED or (short and attained < OVERHEAD_ATTAINED):
            return "overhead", attained
    if not nbytes or flops / nbytes >= ridge(peaks, dtype):
        return "compute", compute_pct
    return "memory", memory_pct


def call_stats(calls: list[TimedCall], peaks: Peaks | None, device: str = "cpu") -> list[OpStat]:
    """One OpStat per call, in execution order, each classified."""
    stats = []
    for timed in calls:
        c = timed.call
        bound, pct = classify(c.flops, c.bytes, timed.time_s, c.dtype, peaks, device=device)
        unit = gpu_unit(timed.kernels, c.dtype) if timed.kernels else ""
        stats.append(OpStat(c.name, 1, timed.time_s, c.flops, c.bytes, c.dtype, unit=unit, shapes=c.shapes, bound=bound, pct_of_peak=pct))
    return stats


def aggregate(stats: list[OpStat], peaks: Peaks | None, device: str = "cpu") -> list[OpStat]:
    """Per op type, by time descending. Its bound is the one holding most of its time (one
    addmm type can mix weight-streaming GEMVs with big GEMMs); pct from its totals."""
    groups: dict[str, list[OpStat]] = defaultdict(list)
    for s in stats:
        groups[s.name].append(s)
    out = []
    for name, group in groups.items():
        time_s = sum(s.time_s for s in group)
        flops, nbytes = sum(s.flops for s in group), sum(s.bytes for s in group)
        dtype = group[0].dtype
        by_bound: dict[str, float] = defaultdict(float)
        for s in group:
            by_bound[s.bound] += s.time_s
        bound = max(by_bound, key=lambda b: by_bound[b])
        pct = _pct(bound, flops, nbytes, time_s, dtype, peaks)
        units = {s.unit for s in group if s.unit}
        unit = units.pop() if len(units) == 1 else (" / ".join(sorted(units)) if units else "")
        out.append(OpStat(name, len(group), time_s, flops, nbytes, dtype, unit=unit, bound=bound, pct_of_peak=pct))
    return sorted(out, key=lambda s: s.time_s, reverse=True)


def _pct(bound: str, flops: float, nbytes: float, time_s: float, dtype: str, peaks: Peaks | None) -> float | None:
    if peaks is None or time_s <= 0:
        return None
    compute = flops / time_s / roof_flops(peaks, dtype)
    memory = nbytes / time_s / (peaks.bandwidth_gbs * GIGA)
    return {"compute": compute, "memory": memory}.get(bound, max(compute, memory))


def top_calls(stats: list[OpStat], n: int = TOP_CALLS) -> list[OpStat]:
    return sorted(stats, key=lambda s: s.time_s, reverse=True)[:n]


def shares(stats: list[OpStat], wall_s: float) -> tuple[dict[str, float], str]:
    """Share of wall time per bound, and the verdict (the largest share's bound).

    Overhead is the time outside any counted op (Python, module calls, ops the counter does not
    see) plus the time of overhead-bound ops. Profiled op times can add up to more than the
    unprofiled wall time (profiler cost, noise): each share is clipped to [0, 1] and the
    shares renormalised so they sum to 1.
    """
    by_bound: dict[str, float] = defaultdict(float)
    for s in stats:
        by_bound[s.bound] += s.time_s
    op_time = sum(by_bound.values())
    wall = wall_s if wall_s > 0 else op_time
    if wall <= 0:
        return {"compute": 0.0, "memory": 0.0, "overhead": 1.0}, "overhead"
    raw = {
        "compute": by_bound["compute"] / wall,
        "memory": by_bound["memory"] / wall,
        "overhead": (wall - op_time + by_bound["overhead"]) / wall,
    }
    if by_bound[""]:  # no peaks: op time that could not be classified
        raw = {"overhead": raw["overhead"], UNCLASSIFIED: by_bound[""] / wall}
    clipped = {k: min(max(v, 0.0), 1.0) for k, v in raw.items()}
    total = sum(clipped.values())
    if total <= 0:
        clipped, total = {**{k: 0.0 for k in clipped}, "overhead": 1.0}, 1.0
    result = {k: v / total for k, v in clipped.items()}
    verdict = max(result, key=lambda k: result[k])
    return result, ("" if verdict == UNCLASSIFIED else verdict)
