"""The roofline projection on a model whose FLOPs and bytes are known by hand: one
nn.Linear(4096, 4). Per forward at batch n, addmm does 2 x n x 4096 x 4 = 32768 n FLOPs and moves
its weight (4096 x 4 x 4 B), bias (16 B), input (n x 4096 x 4 B) and output (n x 4 x 4 B):
65552 + 16400 n bytes; aten::t (the weight's transpose, a view) does and moves nothing."""

from collections import defaultdict

import pytest
import torch

from hone.cost.projection import at_batch, check, fit, project, set_record
from hone.cost.targets import Target, this_machine
from hone.profiler.count import count_ops
from hone.profiler.records import OpStat, Profile

WEIGHTS, PER_SAMPLE, FLOPS_PER_SAMPLE = 65552, 16400, 32768


def _profile(batch: int) -> Profile:
    """What the profiler records for the Linear at `batch` (FLOPs and bytes from its own counter)."""
    torch.manual_seed(0)
    calls = count_ops(torch.nn.Linear(4096, 4).eval(), torch.randn(batch, 4096))
    by_name: dict[str, list] = defaultdict(list)
    for c in calls:
        by_name[c.name].append(c)
    ops = [OpStat(name, len(cs), 1e-5 * len(cs), sum(c.flops for c in cs), sum(c.bytes for c in cs), cs[0].dtype)
           for name, cs in by_name.items()]
    return Profile("linear", f"bs{batch}", "cpu", 1, 1e-4, 1e-4, ops, [], {"compute": 1.0}, "compute")


def _records():
    return [set_record(_profile(1), 1), set_record(_profile(8), 8)]


def _target(flops=1e9, bandwidth=1e12, overhead=0.0, memory=None, kind="cpu", usd=None, **peaks) -> Target:
    return Target("toy", "toy", kind, {"float32": flops, **peaks}, bandwidth, memory, overhead, usd_per_hour=usd)


def test_the_counted_flops_and_bytes_are_the_hand_computed_ones():
    rows = {op[0]: op for op in _records()[1]["ops"]}
    assert rows["aten::addmm"][1:5] == ["float32", 1, FLOPS_PER_SAMPLE * 8, WEIGHTS + PER_SAMPLE * 8]
    assert rows["aten::t"][3:5] == [0, 0]


def test_the_batch_fit_separates_weights_from_activations():
    found = fit(_records())
    addmm = next(o for o in found.ops if o.name == "aten::addmm")
    assert (addmm.flops0, addmm.flops_per) == (0.0, FLOPS_PER_SAMPLE)
    assert (addmm.bytes0, addmm.bytes_per) == (WEIGHTS, PER_SAMPLE)  # weights do not grow with the batch
    assert found.batches == (1, 8) and "from batch 1 and 8" in found.note
    one = fit(_records()[1:])  # one set: in proportion to its batch, said as an assumption
    addmm = next(o for o in one.ops if o.name == "aten::addmm")
    assert addmm.bytes0 == 0 and addmm.bytes_per == (WEIGHTS + 8 * PER_SAMPLE) / 8 and "assumption" in one.note


def test_compute_bound():
    # 1 GFLOP/s, 1 TB/s: 32768 FLOPs take 32.768 µs, 81952 bytes 0.082 µs
    point = at_batch(fit(_records()), _target(flops=1e9, bandwidth=1e12), 1)
    assert point.latency_s == pytest.approx(32.768e-6)
    assert point.binding == "compute" and point.memory_s == 0 and point.overhead_s == 0


def test_memory_bound():
    # 1 PFLOP/s, 1 GB/s: the 81952 bytes take 81.952 µs
    point = at_batch(fit(_records()), _target(flops=1e15, bandwidth=1e9), 1)
    assert point.latency_s == pytest.approx(81.952e-6)
    assert point.binding == "memory" and point.compute_s == 0


def test_overhead_bound_and_a_gpu_launches_no_kernel_for_a_view():
    fast = dict(flops=1e15, bandwidth=1e15, overhead=1e-3)
    cpu = at_batch(fit(_records()), _target(**fast), 1)
    assert cpu.binding == "overhead" and cpu.overhead_s == pytest.approx(2e-3)  # addmm and t: two dispatches
    gpu = at_batch(fit(_records()), _target(**fast, kind="gpu"), 1)
    assert gpu.overhead_s == pytest.approx(1e-3)  # addmm only: the transpose is a view


def test_best_batch_is_the_smallest_reaching_95_percent_of_the_asymptote():
    # memory-bound: throughput(n) = n / ((65552 + 16400 n) / 1e9), asymptote 1e9 / 16400 per second;
    # 95 % needs 0.05 x 16400 n >= 0.95 x 65552, n >= 75.94: batch 76
    projected = project(fit(_records()), _target(flops=1e15, bandwidth=1e9, usd=3.6))
    assert projected.best.batch == 76 and projected.best.binding == "memory"
    assert projected.best.throughput == pytest.approx(76 / ((WEIGHTS + 76 * PER_SAMPLE) / 1e9))
    # $3.60/h at that rate
    assert projected.best.usd_per_million == pytest.approx(3.6 / (projected.best.throughput * 3600) * 1e6)
    assert projected.batch1.batch == 1 and not projected.notes


def test_the_best_batch_is_capped_by_memory_and_a_model_that_does_not_fit_is_said():
    # memory(n) = 65552 + 16400 n (weights + the largest op's bytes per sample); 90 % of the target's
    # memory holding batch 10 but not 11
    room = WEIGHTS + 10 * PER_SAMPLE + 100
    capped = project(fit(_records()), _target(flops=1e15, bandwidth=1e9, memory=room / 0.9))
    assert capped.best.batch == 10 and "capped at 10 by memory" in capped.notes[0]
    tiny = project(fit(_records()), _target(memory=1000))
    assert tiny.best is None and tiny.batch1 is None and "does not fit" in tiny.notes[0]


def test_a_lower_precision_halves_the_bytes_and_takes_its_peak():
    found = fit(_records())
    bf16 = at_batch(found, _target(flops=1e15, bandwidth=1e9, bfloat16=2e15), 1, precision="bfloat16")
    assert bf16.latency_s == pytest.approx(81.952e-6 / 2)
    # no bfloat16 figure (a T4): the float32 rate, and the projection says so
    slow = project(found, _target(flops=1e9, bandwidth=1e15), precision="bfloat16")
    assert slow.batch1.latency_s == pytest.approx(32.768e-6) and "no bfloat16 figure" in slow.notes[0]


def test_this_machine_from_its_measured_peaks_and_the_measured_to_projected_ratio():
    hardware = {"cpu_name": "AMD EPYC", "memory_bytes": 2**34,
                "peaks": {"fp32_gflops": 1.0, "bf16_gflops": None, "int8_gops": 2.0, "bandwidth_gbs": 1000.0,
                          "threads": 2}}
    machine = this_machine(hardware)
    assert machine.measured and machine.peak("int8") == (2e9, False) and machine.peak("bfloat16") == (1e9, True)
    found = fit(_records())
    projected = at_batch(found, machine, 8).latency_s  # 262144 FLOPs / 1 GFLOP/s + 2 dispatches x 2 µs
    assert projected == pytest.approx(262.144e-6 + 4e-6)  # compute; 196752 B at 1 TB/s is smaller
    [ratio] = check(found, machine, [("eager", "bs8", 8, 2 * projected)])
    assert ratio.ratio == pytest.approx(2.0) and ratio.to_dict()["ratio"] == pytest.approx(2.0)
    assert this_machine({"cpu_name": "x"}) is None  # no peaks measured: nothing to project onto


def test_the_runs_profile_summary_keeps_each_sets_record_small():
    from hone.api import _profile_summary

    found = _profile(8)
    found.per_set = _records()
    summary = _profile_summary(found)
    assert summary["sets"] == _records() and [s["batch_size"] for s in summary["sets"]] == [1, 8]
    assert ["aten::addmm", "float32", 1, 262144, 196752, 1e-5] in summary["sets"][1]["ops"]
