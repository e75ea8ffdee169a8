"""Advice: each finding leads to the steps that address it, ranked, with the figure behind it."""

from __future__ import annotations

import dataclasses

from hone.hardware import Peaks
from hone.profiler.advice import advise, findings, overhead_dominates
from hone.profiler.records import BatchPoint, OpStat, Profile

PEAKS = Peaks(fp32_gflops=100.0, bf16_gflops=200.0, int8_gops=400.0, bandwidth_gbs=20.0, threads=2, device="cpu")


def _profile(compute: float, memory: float, overhead: float, scaling=()) -> Profile:
    op = OpStat("aten::addmm", 10, 0.01, 1e9, 1e7, "float32", bound="compute")
    return Profile(
        model="m", input_set="bs8", device="cpu", threads=2, wall_s=0.02, op_time_s=0.015,
        ops=[op], top_ops=[op], shares={"compute": compute, "memory": memory, "overhead": overhead},
        verdict=max(("compute", compute), ("memory", memory), ("overhead", overhead), key=lambda kv: kv[1])[0],
        scaling=list(scaling), peaks=PEAKS.to_dict(),
    )


def _hw(hardware, bf16=True, vnni=True):
    flags = set(hardware.flags) - {"avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni"}
    flags |= {"avx512_bf16"} if bf16 else set()
    flags |= {"avx512_vnni"} if vnni else set()
    return dataclasses.replace(hardware, flags=frozenset(flags), peaks=PEAKS)


def _labels(advice):
    return [a.step for a in advice]


def test_compute_bound_on_a_bf16_cpu_puts_bf16_first(hardware):
    advice = advise(_profile(0.8, 0.1, 0.1), _hw(hardware))
    assert set(_labels(advice)[:2]) == {"bf16", "openvino-bf16"}  # the steps that compute in bf16
    assert advice[0].rank == 1 and "compute-bound: 80%" in advice[0].finding
    assert "200 vs 100 GFLOP/s" in advice[0].reason  # the measured peaks, not a datasheet
    assert {"pt2e-int8", "openvino-int8", "ort-int8-static"} <= set(_labels(advice))  # VNNI int8
    # The expensive compilers are advised for compute-bound models, after the cheap wins.
    labels = _labels(advice)
    assert labels.index("inductor") < labels.index("inductor-max-autotune") < labels.index("tvm-tuned")


def test_no_bf16_units_means_no_bf16_advice(hardware):
    labels = _labels(advise(_profile(0.8, 0.1, 0.1), _hw(hardware, bf16=False)))
    assert "bf16" not in labels and "openvino-bf16" not in labels


def test_overhead_bound_advises_runtimes_without_python(hardware):
    flat = [BatchPoint(1, 0.010), BatchPoint(16, 0.012)]
    advice = advise(_profile(0.05, 0.05, 0.9, flat), _hw(hardware))
    labels = _labels(advice)
    assert labels[0] == "onnxruntime" and "aoti" in labels and "torchscript-trace" in labels
    assert "latency grows only x1.2 from batch 1 to 16" in advice[0].finding
    assert "bf16" not in labels  # lower precision does not cut dispatch


def test_findings_carry_their_share_and_the_units_that_pay_here(hardware):
    found = findings(_profile(0.7, 0.1, 0.3), _hw(hardware, vnni=True))
    assert [f.kind for f in found] == ["compute", "overhead"]  # memory's 10% is not significant
    assert set(found[0].units) == {"bf16", "int8"} and "400 GOP/s" in found[0].units["int8"]
    no_units = findings(_profile(0.7, 0.1, 0.3), _hw(hardware, bf16=False, vnni=False))
    assert "bf16" not in no_units[0].units
    assert overhead_dominates(findings(_profile(0.1, 0.1, 0.8), _hw(hardware))) is not None
    assert overhead_dominates(findings(_profile(0.6, 0.3, 0.1), _hw(hardware))) is None


def test_memory_bound_advises_fusion_and_smaller_bytes(hardware):
    advice = advise(_profile(0.1, 0.8, 0.1), _hw(hardware))
    labels = _labels(advice)
    assert labels[0] == "inductor" and {"bf16", "openvino-int8-weights", "torchao-int8-weight-only"} <= set(labels)
    assert all("memory-bound: 80%" in a.finding for a in advice)


def test_each_step_appears_once_with_its_strongest_finding(hardware):
    advice = advise(_profile(0.4, 0.35, 0.25), _hw(hardware))
    labels = _labels(advice)
    assert len(labels) == len(set(labels))
    assert [a.rank for a in advice] == list(range(1, len(advice) + 1))
