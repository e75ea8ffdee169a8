"""hone.hardware.peaks: the measurement itself, Peaks validation, the per-fingerprint cache."""

from __future__ import annotations

import importlib
import json
import math

import pytest

from hone.hardware import Peaks, probe
from hone.hardware import peaks as peaks_mod

probe_mod = importlib.import_module("hone.hardware.probe")

FAKE = Peaks(123.0, 456.0, 789.0, 12.0, threads=2, device="cpu", measured_at="2025-01-01T00:00:00+00:00")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("HONE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(probe_mod, "_query_gpus", lambda: ())


@pytest.fixture
def fake_measure(monkeypatch):
    """Replaces the child measurement; `.calls` counts how often it ran."""

    def measure_in_child(threads, *, bf16, timeout=None):
        measure_in_child.calls += 1
        return FAKE

    measure_in_child.calls = 0
    monkeypatch.setattr(peaks_mod, "measure_in_child", measure_in_child)
    return measure_in_child


def _positive_finite(x):
    return x is not None and math.isfinite(x) and x > 0


@pytest.mark.parametrize("bf16", [False, True])
def test_measure_small_sizes(bf16):
    p = peaks_mod.measure(1, bf16=bf16, gemm_size=64, copy_bytes=2**20, min_runs=1)
    assert _positive_finite(p.fp32_gflops) and _positive_finite(p.bandwidth_gbs)
    assert _positive_finite(p.bf16_gflops) if bf16 else p.bf16_gflops is None
    assert p.int8_gops is None or _positive_finite(p.int8_gops)
    assert (p.threads, p.device, p.from_cache) == (1, "cpu", False) and p.measured_at


def test_int8_is_measured_through_a_kernel_the_int8_recipes_run(hardware):
    p = peaks_mod.measure(1, bf16=False, gemm_size=256, copy_bytes=2**20, min_runs=1)
    if hardware.arch == "x86_64":  # oneDNN's u8 x s8 linear: what pt2e + Inductor lowers to, AVX2 or VNNI
        assert p.int8_kernel == "onednn qlinear u8s8" and _positive_finite(p.int8_gops)
    else:
        assert p.int8_gops is None or p.int8_kernel


def test_peaks_cached_by_an_older_method_are_measured_again(fake_measure):
    hw = probe()
    path = peaks_mod.cache_path(hw.fingerprint)
    data = json.loads(path.read_text())
    del data["peaks"]["method"]  # written before the method was recorded: int8 via torch._int_mm
    path.write_text(json.dumps(data))
    assert Peaks.from_dict(data["peaks"]).method == 1
    again = probe()
    assert fake_measure.calls == 2 and not again.peaks.from_cache
    assert json.loads(path.read_text())["peaks"]["method"] == peaks_mod.PEAKS_METHOD


def test_bf16_measured_only_with_bf16_instructions(monkeypatch):
    seen = {}

    def measure_in_child(threads, *, bf16, timeout=None):
        seen["bf16"] = bf16
        return None

    monkeypatch.setattr(peaks_mod, "measure_in_child", measure_in_child)
    hw = probe()
    assert seen["bf16"] == hw.has_bf16


def test_peaks_validate_and_round_trip():
    assert Peaks.from_dict(json.loads(json.dumps(FAKE.to_dict()))) == FAKE
    with pytest.raises(ValueError):
        Peaks(-1.0, None, None, 10.0, threads=1, device="cpu")
    with pytest.raises(ValueError):
        Peaks(1.0, float("nan"), None, 10.0, threads=1, device="cpu")
    with pytest.raises(ValueError):
        Peaks(1.0, None, None, 10.0, threads=0, device="cpu")


def test_cache_hit_skips_measurement(fake_measure, tmp_path):
    first = probe()
    assert fake_measure.calls == 1 and first.peaks == FAKE and not first.peaks.from_cache
    assert (tmp_path / "cache" / f"hardware-{first.fingerprint}.json").is_file()
    second = probe()
    assert fake_measure.calls == 1 and second.peaks.from_cache
    assert second.peaks.fp32_gflops == FAKE.fp32_gflops


def test_refresh_remeasures(fake_measure):
    probe()
    probe(refresh=True)
    assert fake_measure.calls == 2


def test_no_measure_returns_cached_peaks_only(fake_measure):
    assert probe(measure_peaks=False).peaks is None
    probe()
    assert probe(measure_peaks=False).peaks.from_cache
    assert fake_measure.calls == 1


def test_explicit_cache_dir(fake_measure, tmp_path):
    hw = probe(cache_dir=tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / f"hardware-{hw.fingerprint}.json").is_file()


@pytest.mark.parametrize("garbage", ["{not json", "[1, 2]", '{"schema": 1}', "\xff\xfe"])
def test_corrupt_cache_is_remeasured_and_rewritten(fake_measure, garbage):
    path = peaks_mod.cache_path(probe(measure_peaks=False).fingerprint)
    path.parent.mkdir(parents=True)
    path.write_text(garbage, encoding="latin-1")
    assert probe().peaks == FAKE and fake_measure.calls == 1
    assert json.loads(path.read_text())["peaks"]["fp32_gflops"] == FAKE.fp32_gflops


def test_cache_with_invalid_peaks_is_a_miss(fake_measure):
    hw = probe()
    path = peaks_mod.cache_path(hw.fingerprint)
    data = json.loads(path.read_text())
    data["peaks"]["fp32_gflops"] = -5
    path.write_text(json.dumps(data))
    assert not probe().peaks.from_cache and fake_measure.calls == 2


def test_failed_measurement_gives_no_peaks_and_no_cache(monkeypatch):
    monkeypatch.setattr(peaks_mod, "measure_in_child", lambda threads, *, bf16, timeout=None: None)
    hw = probe()
    assert hw.peaks is None and not peaks_mod.cache_path(hw.fingerprint).exists()


def test_child_timeout_warns_and_returns_none():
    with pytest.warns(RuntimeWarning, match="took over"):
        assert peaks_mod.measure_in_child(1, bf16=False, timeout=0.01) is None


def test_unwritable_cache_warns(fake_measure, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.warns(RuntimeWarning, match="could not cache"):
        assert probe(cache_dir=blocker / "sub").peaks == FAKE


def test_gpu_query_child_answers_a_list():
    assert isinstance(peaks_mod.query_gpus_in_child(), list)


@pytest.mark.slow
def test_real_measurement_in_child():
    hw = probe(refresh=True)
    p = hw.peaks
    assert p is not None and p.threads == hw.default_threads
    assert _positive_finite(p.fp32_gflops) and _positive_finite(p.bandwidth_gbs)
    assert (p.bf16_gflops is not None) == hw.has_bf16
