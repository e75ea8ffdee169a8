"""profile_workload end to end: a conv net, a text model, and GPT-2 decode against real peaks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hone.hardware import Peaks
from hone.models.workload import InputSet, Workload
from hone.profiler.profile import NO_PEAKS_NOTE, profile_workload
from hone.profiler.records import BOUNDS
from tiny_models import TinyConv

PEAKS = Peaks(fp32_gflops=100, bf16_gflops=200, int8_gops=400, bandwidth_gbs=20, threads=2, device="cpu")
TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=1000)
GPT2_VOCAB = 50257


def _check_consistent(profile):
    assert sum(profile.shares.values()) == pytest.approx(1.0)
    assert all(0.0 <= v <= 1.0 for v in profile.shares.values())
    assert profile.verdict == max(profile.shares, key=profile.shares.get)
    assert profile.wall_s > 0 and profile.op_time_s > 0
    assert profile.op_time_s == pytest.approx(sum(o.time_s for o in profile.ops))
    assert [o.time_s for o in profile.ops] == sorted((o.time_s for o in profile.ops), reverse=True)
    assert 0 < len(profile.top_ops) <= 15 and all(o.calls == 1 for o in profile.top_ops)
    assert profile.advice == []


def test_conv_net_end_to_end(hardware):
    torch.manual_seed(0)
    workload = Workload("tiny-conv", TinyConv().eval(), [
        InputSet("bs1", {"pixels": torch.randn(1, 3, 32, 32)}),
        InputSet("bs4", {"pixels": torch.randn(4, 3, 32, 32)}),
    ])  # fmt: skip
    threads_before = torch.get_num_threads()
    profile = profile_workload(workload, dataclasses.replace(hardware, peaks=PEAKS), threads=1, scaling_max_batch=4)
    assert torch.get_num_threads() == threads_before
    assert profile.input_set == "bs4" and profile.threads == 1 and profile.device == "cpu"
    _check_consistent(profile)
    assert set(profile.shares) == set(BOUNDS)
    conv = next(o for o in profile.ops if o.name == "aten::convolution")
    assert conv.flops == 2 * 4 * 8 * 32 * 32 * 3 * 3 * 3 and conv.bound in BOUNDS and conv.time_s > 0
    assert [p.batch_size for p in profile.scaling] == [1, 2, 4] and all(p.latency_s > 0 for p in profile.scaling)
    # The profiled batch's point is its whole-forward time, measured once, not timed again.
    assert profile.scaling[-1].latency_s == profile.wall_s
    assert profile.peaks == PEAKS.to_dict()
    memory = profile.memory
    assert set(memory.peak_by_stage) == {"load", "first call", "steady state"}
    params = sum(p.numel() * p.element_size() for p in workload.module.parameters())
    assert memory.weights_bytes == params
    assert {t.kind for t in memory.largest} == {"weight", "activation"}
    assert any(t.name.startswith("activation aten::convolution #1") for t in memory.largest)
    assert profile.to_dict()["shares"] == profile.shares  # the store can keep it


def test_text_model_end_to_end(hardware):
    pytest.importorskip("transformers")
    from hone.models.hf import load_hf

    workload = load_hf("bert", batch_sizes=(1, 2), config_overrides=TINY_BERT)
    hw = dataclasses.replace(hardware, peaks=PEAKS)
    profile = profile_workload(workload, hw, input_set="bs1", threads=1, scaling_max_batch=2)
    assert profile.input_set == "bs1" and profile.model == "hf:bert"
    _check_consistent(profile)
    names = {o.name for o in profile.ops}
    assert "aten::addmm" in names and "aten::embedding" in names
    assert not any("unmatched" in n or "no profiler event" in n for n in profile.notes), profile.notes


def test_without_peaks_says_so(hardware):
    torch.manual_seed(0)
    workload = Workload("tiny-conv", TinyConv().eval(), [InputSet("bs2", {"pixels": torch.randn(2, 3, 16, 16)})])
    profile = profile_workload(workload, dataclasses.replace(hardware, peaks=None), threads=1, scaling_max_batch=0)
    assert NO_PEAKS_NOTE in profile.notes and profile.peaks == {} and profile.scaling == []
    assert {o.bound for o in profile.ops} <= {"", "overhead"}
    assert sum(profile.shares.values()) == pytest.approx(1.0) and profile.verdict in ("", "overhead")


def _matmul_intensity(profile) -> float:
    addmm = next(o for o in profile.ops if o.name == "aten::addmm")
    return addmm.intensity


@pytest.mark.slow
def test_gpt2_decode_moves_from_weight_streaming_toward_compute():
    """The issue's check: one-token decode at batch 1 is GEMV (every weight read for one
    token); at batch 64 each weight serves 64 tokens, so the GEMMs climb toward the compute roof."""
    transformers = pytest.importorskip("transformers")
    from hone.hardware import probe

    hw = probe(measure_peaks=True)  # real peaks of this machine (cached per machine)
    assert hw.peaks is not None, "peak measurement failed"
    torch.manual_seed(0)
    model = transformers.GPT2Model(transformers.GPT2Config(use_cache=False)).eval()
    ids = torch.randint(0, GPT2_VOCAB, (64, 1), generator=torch.Generator().manual_seed(0))
    workload = Workload("gpt2-decode", model, [InputSet("bs1", {"input_ids": ids[:1]}), InputSet("bs64", {"input_ids": ids})])
    # One thread: on a shared 2-core box a busy neighbour stalls every OpenMP barrier of a
    # 2-thread run, which turns µs ops into ms ones; the direction under test does not need two.
    one = profile_workload(workload, hw, input_set="bs1", threads=1, scaling_max_batch=0)
    many = profile_workload(workload, hw, input_set="bs64", threads=1, scaling_max_batch=0)
    print(
        f"\ngpt2 decode, peaks {hw.peaks.fp32_gflops:.0f} GFLOP/s fp32, {hw.peaks.bandwidth_gbs:.1f} GB/s: "
        f"bs1 {one.verdict} {one.shares} wall {one.wall_s * 1e3:.1f} ms; "
        f"bs64 {many.verdict} {many.shares} wall {many.wall_s * 1e3:.1f} ms; "
        f"addmm FLOP/B {_matmul_intensity(one):.2f} -> {_matmul_intensity(many):.2f}"
    )
    _check_consistent(one)
    _check_consistent(many)
    assert one.verdict in ("memory", "overhead")
    assert many.shares["compute"] > one.shares["compute"]
    assert _matmul_intensity(many) > 10 * _matmul_intensity(one)


def test_a_compute_op_above_its_roof_says_the_peaks_are_stale(hardware):
    """Peaks far below what the machine reaches (measured under load, say) show up as a GEMM
    'beating' its roof; the profile says so instead of reporting 5000 % of peak quietly."""
    import dataclasses as dc

    import torch

    from hone.hardware import Peaks
    from hone.models.workload import InputSet, Workload
    from hone.profiler.profile import profile_workload

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.Linear(512, 512)).eval()
    workload = Workload("gemm", model, [InputSet("bs64", {"input": torch.randn(64, 512)})])
    stale = Peaks(fp32_gflops=0.5, bf16_gflops=None, int8_gops=None, bandwidth_gbs=0.05, threads=hardware.default_threads, device="cpu")
    found = profile_workload(workload, dc.replace(hardware, peaks=stale), scaling_max_batch=0)
    assert any("peaks look stale" in note for note in found.notes)
