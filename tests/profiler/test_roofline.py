"""Roofline classification with fixed, fake peaks: nothing here measures the machine."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hone.hardware import Peaks
from hone.profiler import roofline
from hone.profiler.count import count_ops
from hone.profiler.join import TimedCall
from hone.profiler.records import BatchPoint, OpStat
from hone.profiler.scaling import batch_sizes, repeat_first_sample, scaling_verdict

# ridge points: fp32 100 GFLOP/s / 20 GB/s = 5 FLOP/B; bf16 10 FLOP/B
PEAKS = Peaks(fp32_gflops=100, bf16_gflops=200, int8_gops=400, bandwidth_gbs=20, threads=2, device="cpu")


def _call(fn, *args, name):
    return next(c for c in count_ops(fn, *args) if c.name == name)


def test_roofs_and_ridge_by_dtype():
    assert roofline.roof_flops(PEAKS, "float32") == 100e9
    assert roofline.roof_flops(PEAKS, "bfloat16") == roofline.roof_flops(PEAKS, "float16") == 200e9
    assert roofline.roof_flops(PEAKS, "int8") == 400e9
    assert roofline.roof_flops(PEAKS, "int64") == 100e9  # index math runs on the fp32 units at best
    assert roofline.ridge(PEAKS, "float32") == pytest.approx(5.0)
    no_bf16 = dataclasses.replace(PEAKS, bf16_gflops=None)
    assert roofline.roof_flops(no_bf16, "bfloat16") == 100e9


def test_large_matmul_is_compute_elementwise_add_is_memory_tiny_ops_are_overhead():
    n = 512
    a, b = torch.randn(n, n), torch.randn(n, n)
    mm = _call(torch.mm, a, b, name="aten::mm")
    assert mm.intensity > 5 * roofline.ridge(PEAKS, "float32")
    # times chosen to attain half a roof, so only the intensity decides
    bound, pct = roofline.classify(mm.flops, mm.bytes, mm.flops / 50e9, mm.dtype, PEAKS)
    assert (bound, pct) == ("compute", pytest.approx(0.5))

    big = torch.randn(4_000_000)
    add = _call(torch.add, big, big + 1, name="aten::add")
    assert add.flops == 0 and add.bytes == 3 * big.nbytes
    bound, pct = roofline.classify(add.flops, add.bytes, add.bytes / 10e9, add.dtype, PEAKS)
    assert (bound, pct) == ("memory", pytest.approx(0.5))

    tiny = _call(torch.add, torch.ones(4), torch.ones(4), name="aten::add")
    assert roofline.classify(tiny.flops, tiny.bytes, 5e-6, tiny.dtype, PEAKS)[0] == "overhead"
    # the same tiny op, slow: 1 ms at almost none of either roof is fixed per-call cost too
    assert roofline.classify(tiny.flops, tiny.bytes, 1e-3, tiny.dtype, PEAKS)[0] == "overhead"
    # a long call at 5 % of the bandwidth is slow memory traffic, not a fixed cost
    assert roofline.classify(0, 1e5, 1e5 / 1e9, "float32", PEAKS) == ("memory", pytest.approx(0.05))
    # a short call that reaches its roof is not overhead
    assert roofline.classify(2e6, 1e3, 10e-6, "float32", PEAKS)[0] == "compute"
    # a view moves nothing and computes nothing: whatever it costs is dispatch
    assert roofline.classify(0, 0, 2e-6, "float32", PEAKS) == ("overhead", 0.0)


def _stat(name, time_s, bound, flops=0.0, nbytes=0.0):
    return OpStat(name, 1, time_s, flops, nbytes, "float32", bound=bound)


def test_shares_sum_to_one_and_count_time_outside_ops_as_overhead():
    stats = [_stat("aten::mm", 6e-3, "compute"), _stat("aten::add", 2e-3, "memory"), _stat("aten::view", 1e-3, "overhead")]
    shares, verdict = roofline.shares(stats, wall_s=10e-3)
    assert shares == pytest.approx({"compute": 0.6, "memory": 0.2, "overhead": 0.2})
    assert verdict == "compute"
    # profiled op time above the wall (profiler cost): clipped, still sums to 1
    shares, verdict = roofline.shares(stats, wall_s=5e-3)
    assert sum(shares.values()) == pytest.approx(1.0) and shares["overhead"] == pytest.approx(0.0)
    assert all(0 <= v <= 1 for v in shares.values())
    shares, verdict = roofline.shares([], wall_s=1e-3)
    assert verdict == "overhead" and shares["overhead"] == 1.0


def test_without_peaks_only_time_tells_ops_apart():
    assert roofline.classify(1e9, 1e6, 1e-3, "float32", None) == ("", None)
    assert roofline.classify(10, 10, 1e-6, "float32", None) == ("overhead", None)
    shares, verdict = roofline.shares([_stat("aten::mm", 8e-3, ""), _stat("aten::t", 1e-6, "overhead")], wall_s=10e-3)
    assert set(shares) == {"overhead", roofline.UNCLASSIFIED}
    assert sum(shares.values()) == pytest.approx(1.0) and verdict == ""


def test_call_stats_aggregate_and_top_calls():
    x = torch.randn(64, 256)
    calls = count_ops(torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256)), x)
    timed = [TimedCall(c, 1e-3 if c.name == "aten::addmm" else 1e-6, True) for c in calls]
    stats = roofline.call_stats(timed, PEAKS)
    assert [s.name for s in stats] == [c.name for c in calls] and all(s.calls == 1 for s in stats)
    ops = roofline.aggregate(stats, PEAKS)
    assert ops[0].name == "aten::addmm" and ops[0].calls == 2 and ops[0].time_s == pytest.approx(2e-3)
    assert ops[0].flops == 2 * 2 * 64 * 256 * 256 and ops[0].bound == "compute"
    assert ops[0].pct_of_peak == pytest.approx(ops[0].flops / 2e-3 / 100e9)
    assert [s.time_s for s in ops] == sorted((s.time_s for s in ops), reverse=True)
    top = roofline.top_calls(stats, n=2)
    assert [s.name for s in top] == ["aten::addmm", "aten::addmm"] and top[0].shapes


def test_scaling_verdict_flags_flat_latency_only():
    flat = [BatchPoint(b, 10e-3 * (1 + 0.02 * b)) for b in batch_sizes(16)]
    assert scaling_verdict(flat) == "overhead-bound: latency grows only x1.3 from batch 1 to 16"
    linear = [BatchPoint(b, 1e-3 * b) for b in batch_sizes(16)]
    assert scaling_verdict(linear) is None
    assert scaling_verdict([BatchPoint(1, 1e-3), BatchPoint(2, 1e-3)]) is None  # too short a span
    assert scaling_verdict([]) is None


def test_batch_sizes_and_repeated_inputs():
    assert batch_sizes(16) == [1, 2, 4, 8, 16] and batch_sizes(6) == [1, 2, 4, 6] and batch_sizes(1) == [1]
    ids, mask = torch.arange(10).reshape(2, 5), torch.ones(2, 5, dtype=torch.int64)
    big_ids, big_mask = repeat_first_sample((ids, mask), 4)
    assert big_ids.shape == (4, 5) and torch.equal(big_ids, ids[:1].repeat(4, 1)) and big_ids.is_contiguous()
    assert big_mask.shape == (4, 5)
