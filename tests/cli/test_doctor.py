"""`hone doctor`: JSON shape, rich output, and robustness to any set of plugins."""

from __future__ import annotations

import importlib
import json

import pytest

from hone.hardware import GpuInfo, Peaks
from hone.hardware import peaks as peaks_mod

probe_mod = importlib.import_module("hone.hardware.probe")
FAKE = Peaks(123.0, None, 789.0, 12.0, threads=2, device="cpu", measured_at="2025-01-01T00:00:00+00:00")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("HONE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at the terminal width; keep lines whole
    monkeypatch.setattr(probe_mod, "_query_gpus", lambda: ())
    monkeypatch.setattr(peaks_mod, "measure_in_child", lambda threads, *, bf16, timeout=None: FAKE)


def run(capsys, *args):
    from hone.cli.app import main

    code = main(["doctor", *args])
    return code, capsys.readouterr().out


class BrokenRegistry:
    def __iter__(self):
        raise ImportError("hone.passes.bad imports a missing backend")


def plugin(name, devices=("cpu",), reason=None, raises=False):
    def available(cls, hw, device="cpu"):
        if raises:
            raise RuntimeError("boom")
        return reason

    attrs = {"name": name, "description": f"{name} [test]", "devices": devices, "available": classmethod(available)}
    return type(name, (), attrs)


def test_json_has_hardware_peaks_and_plugins(capsys):
    code, out = run(capsys, "--json")
    assert code == 0
    report = json.loads(out)
    assert {"hardware", "capabilities", "default_threads", "peaks_source", "runtimes", "passes", "errors"} <= set(report)
    hw = report["hardware"]
    assert hw["fingerprint"] and isinstance(hw["flags"], list) and hw["gpus"] == []
    assert hw["peaks"]["fp32_gflops"] == 123.0 and report["peaks_source"] == "measured now"
    assert set(report["capabilities"]) == {"avx2", "avx512", "vnni", "bf16", "amx", "cuda"}
    for entry in report["runtimes"] + report["passes"]:
        assert {"name", "description", "devices"} <= set(entry)
        assert all(reason is None or isinstance(reason, str) for reason in entry["devices"].values())


def test_json_second_run_is_cached_and_no_peaks_skips(capsys):
    run(capsys, "--json")
    assert json.loads(run(capsys, "--json")[1])["peaks_source"] == "cached"
    report = json.loads(run(capsys, "--json", "--no-peaks", "--refresh")[1])
    assert report["hardware"]["peaks"] is None and report["peaks_source"] == "skipped (--no-peaks)"


def test_table_output(capsys):
    code, out = run(capsys)
    assert code == 0
    for text in ("Machine", "no CUDA device", "avx512", "Measured peaks (measured now)", "123.0 GFLOP/s", "n/a (no bf16"):
        assert text in out
    assert "Measured peaks (cached)" in run(capsys)[1]


def test_any_number_of_plugins_and_broken_ones(capsys, monkeypatch):
    doctor = importlib.import_module("hone.cli.doctor")
    missing = "x is not installed (pip install 'hone[x]')"
    runtimes = (
        [
            plugin("ok_rt"),
            plugin("gpu_only", devices=("cuda",)),
            plugin("needs_pkg", reason=missing),
            plugin("buggy", raises=True),
        ]
    )
    monkeypatch.setattr(doctor, "RUNTIMES", runtimes)
    monkeypatch.setattr(doctor, "PASSES", BrokenRegistry())
    code, out = run(capsys, "--json")
    report = json.loads(out)
    assert code == 0 and report["passes"] == [] and "missing backend" in report["errors"]["passes"]
    devices = {entry["name"]: entry["devices"] for entry in report["runtimes"]}
    assert devices["ok_rt"] == {"cpu": None}
    assert "no cuda device" in devices["gpu_only"]["cuda"]
    assert "boom" in devices["buggy"]["cpu"]
    code, out = run(capsys)
    assert code == 0 and "hone[x]" in out and "could not list passes" in out  # markup escaped

    monkeypatch.setattr(doctor, "RUNTIMES", [])
    assert run(capsys)[0] == 0


def test_gpu_is_shown(capsys, monkeypatch):
    monkeypatch.setattr(probe_mod, "_query_gpus", lambda: (GpuInfo("NVIDIA H100 80GB HBM3", (9, 0), 80 * 2**30),))
    code, out = run(capsys)
    assert code == 0 and "NVIDIA H100 80GB HBM3" in out and "compute capability 9.0" in out
    report = json.loads(run(capsys, "--json")[1])
    assert report["capabilities"]["cuda"] and report["hardware"]["gpus"][0]["capability"] == [9, 0]
