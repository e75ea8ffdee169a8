"""hone.hardware.probe: cpuinfo parsing, capabilities, fingerprint, dict round trip, lean import."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

from hone.hardware import GpuInfo, Hardware, Peaks, default_threads, probe

# `hone.hardware.probe` is the function; the module is reached through importlib.
probe_mod = importlib.import_module("hone.hardware.probe")

SAMPLE_CPUINFO = """\
processor	: 0
vendor_id	: AuthenticAMD
model name	: AMD EPYC 9R14 96-Core Processor
flags		: fpu sse sse2 avx avx2 fma avx512f avx512_bf16 avx512_vnni
bogomips	: 5192.26

processor	: 1
vendor_id	: AuthenticAMD
model name	: AMD EPYC 9R14 96-Core Processor
flags		: fpu sse sse2 avx avx2 fma avx512f avx512_bf16 avx512_vnni
"""

ARM_CPUINFO = """\
processor	: 0
BogoMIPS	: 243.75
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics bf16
CPU implementer	: 0x41
"""


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("HONE_CACHE_DIR", str(tmp_path / "cache"))
    # GPU facts come from a child that imports torch (~1.5 s); the lean-import test runs it for real.
    monkeypatch.setattr(probe_mod, "_query_gpus", lambda: ())


def make_hw(flags=(), gpus=(), peaks=None, **overrides) -> Hardware:
    facts = dict(
        cpu_name="Test CPU",
        arch="x86_64",
        physical_cores=4,
        logical_cores=8,
        usable_cores=8,
        usable_physical_cores=4,
        flags=frozenset(flags),
        memory_bytes=16 * 2**30,
        gpus=tuple(gpus),
        torch_version="2.13.0+cpu",
    )
    facts.update(overrides)
    return Hardware(**facts, fingerprint=probe_mod.fingerprint(**facts), peaks=peaks)


def test_parse_cpuinfo_x86():
    name, flags = probe_mod.parse_cpuinfo(SAMPLE_CPUINFO)
    assert name == "AMD EPYC 9R14 96-Core Processor"
    assert flags == frozenset("fpu sse sse2 avx avx2 fma avx512f avx512_bf16 avx512_vnni".split())


def test_parse_cpuinfo_arm_and_empty():
    name, flags = probe_mod.parse_cpuinfo(ARM_CPUINFO)
    assert name is None and "asimd" in flags
    assert probe_mod.parse_cpuinfo("") == (None, frozenset())


def test_capabilities_follow_flags():
    _, flags = probe_mod.parse_cpuinfo(SAMPLE_CPUINFO)
    hw = make_hw(flags)
    assert (hw.has_avx2, hw.has_avx512, hw.has_vnni, hw.has_bf16, hw.has_amx, hw.has_cuda) == (
        True, True, True, True, False, False,
    )
    assert make_hw({"avx_vnni", "amx_tile", "amx_bf16"}).has_vnni
    assert make_hw({"amx_tile", "amx_bf16"}).has_bf16 and make_hw({"amx_tile"}).has_amx
    assert not make_hw({"avx2"}).has_bf16
    assert make_hw(gpus=[GpuInfo("H100", (9, 0), 80 * 2**30)]).has_cuda


def test_default_threads_property():
    assert make_hw().default_threads == 4
    # topology unknown: fall back to the share of physical cores in the mask
    assert make_hw(usable_physical_cores=0, usable_cores=4).default_threads == 2
    assert make_hw(usable_physical_cores=0, usable_cores=1).default_threads == 1


def test_default_threads_live():
    threads = default_threads()
    assert 1 <= threads <= len(os.sched_getaffinity(0))
    assert probe(measure_peaks=False).default_threads == threads


def test_probe_reads_this_machine():
    hw = probe(measure_peaks=False)
    assert hw.cpu_name and hw.arch
    assert hw.logical_cores >= hw.usable_cores == len(os.sched_getaffinity(0))
    assert hw.physical_cores >= 1 and hw.memory_bytes > 2**28
    assert hw.peaks is None and hw.gpus == ()


def test_fingerprint_stable_across_probes():
    assert probe(measure_peaks=False).fingerprint == probe(measure_peaks=False).fingerprint


def test_fingerprint_changes_with_flags(monkeypatch):
    before = probe(measure_peaks=False)
    # Toggle AMX, whichever way this CPU has it.
    toggled = before.flags - {"amx_tile"} if before.has_amx else before.flags | {"amx_tile"}
    monkeypatch.setattr(probe_mod, "_cpu_name_and_flags", lambda: (before.cpu_name, toggled))
    after = probe(measure_peaks=False)
    assert after.has_amx != before.has_amx and after.fingerprint != before.fingerprint


@pytest.mark.parametrize("flags,arch,saturates", [
    ({"avx2", "fma"}, "x86_64", True),  # Zen 3, Haswell..Skylake client: VPMADDUBSW only
    ({"avx2", "avx512f", "avx512_vnni"}, "x86_64", False),  # Zen 4, Cascade Lake and later
    ({"avx2", "avx_vnni"}, "x86_64", False),  # Alder Lake: VEX-encoded VNNI
    ({"asimd", "asimddp"}, "aarch64", False),  # ARM's int8 dot products accumulate in 32 bits
])
def test_int8_saturation_follows_the_probed_isa(flags, arch, saturates):
    assert make_hw(flags, arch=arch).int8_dot_saturates is saturates


def test_fingerprint_ignores_memory_jitter_within_a_gib():
    assert make_hw(memory_bytes=16 * 2**30).fingerprint == make_hw(memory_bytes=16 * 2**30 - 5 * 2**20).fingerprint
    assert make_hw().fingerprint != make_hw(gpus=[GpuInfo("H100", (9, 0), 80 * 2**30)]).fingerprint


def test_missing_cpuinfo_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(probe_mod, "CPUINFO", tmp_path / "no-cpuinfo")
    hw = probe(measure_peaks=False)
    assert hw.cpu_name and hw.flags == frozenset()
    assert not (hw.has_avx2 or hw.has_bf16)


def test_hardware_round_trips_through_json():
    peaks = Peaks(100.0, None, 400.0, 20.0, threads=4, device="cpu", measured_at="2025-01-01T00:00:00+00:00")
    hw = make_hw({"avx2", "avx512f"}, gpus=[GpuInfo("H100", (9, 0), 80 * 2**30)], peaks=peaks)
    data = json.loads(json.dumps(hw.to_dict()))
    assert data["flags"] == ["avx2", "avx512f"]
    assert Hardware.from_dict(data) == hw


def test_import_does_not_touch_torch_or_cuda(tmp_path):
    # Real GPU query (in a child) included: the calling process must stay CUDA-free.
    code = (
        "import sys, hone, hone.hardware\n"
        "hw = hone.hardware.probe(measure_peaks=False)\n"
        "cuda = 'torch' in sys.modules and sys.modules['torch'].cuda.is_initialized()\n"
        "print('torch' in sys.modules, cuda)\n"
    )
    env = dict(os.environ, HONE_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_a_process_with_a_cpu_only_torch_finds_no_gpu_without_asking_a_child(monkeypatch):
    import torch

    asked = []
    monkeypatch.setattr(probe_mod, "_GPUS", None)
    monkeypatch.setattr(probe_mod._peaks, "query_gpus_in_child", lambda: asked.append(1) or [])
    gpus = probe_mod._query_gpus()
    if torch.version.cuda or getattr(torch.version, "hip", None):
        assert asked  # a GPU build: only a child may touch the device
    else:
        assert gpus == () and not asked
