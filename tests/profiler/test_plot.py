"""The roofline plot writes a real PNG and SVG, with and without measured peaks."""

from __future__ import annotations

import pytest

from hone.profiler.plot import plot_roofline
from hone.profiler.records import OpStat, Profile

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PEAKS = {"fp32_gflops": 150.0, "bf16_gflops": 600.0, "int8_gops": 900.0, "bandwidth_gbs": 20.0, "threads": 2, "device": "cpu"}


def _profile(peaks: dict) -> Profile:
    ops = [
        OpStat("aten::addmm", 12, 4e-3, flops=4e9, bytes=2e7, dtype="float32", bound="compute", pct_of_peak=0.7),
        OpStat("aten::gelu", 6, 1e-3, flops=1e7, bytes=4e7, dtype="float32", bound="memory", pct_of_peak=0.5),
        OpStat("aten::layer_norm", 13, 8e-4, flops=5e7, bytes=4e7, dtype="float32", bound="memory"),
        OpStat("aten::bmm", 12, 2e-3, flops=1e9, bytes=3e7, dtype="float32", bound="compute"),
        OpStat("aten::add", 30, 5e-4, flops=1e7, bytes=1e8, dtype="float32", bound="overhead"),
        OpStat("aten::view", 90, 1e-4, flops=0.0, bytes=0.0),  # no work: not placed on the plot
    ]
    shares = {"compute": 0.6, "memory": 0.3, "overhead": 0.1}
    return Profile("minilm", "bs8", "cpu", 2, 9e-3, 8.4e-3, ops, ops[:3], shares, "compute", peaks=peaks)


@pytest.mark.parametrize("peaks", [PEAKS, {}], ids=["with-peaks", "no-peaks"])
def test_roofline_writes_png_and_svg(tmp_path, peaks):
    written = plot_roofline(_profile(peaks), tmp_path / "plots" / "roofline")
    assert written == [tmp_path / "plots" / "roofline.png", tmp_path / "plots" / "roofline.svg"]
    png, svg = (p.read_bytes() for p in written)
    assert png.startswith(PNG_MAGIC) and len(png) > 1000
    assert b"<svg" in svg[:1000] and len(svg) > 1000


def test_roofline_with_no_placeable_op(tmp_path):
    profile = _profile(PEAKS)
    profile.ops = [op for op in profile.ops if op.flops == 0]
    png, svg = plot_roofline(profile, tmp_path / "empty")
    assert png.read_bytes().startswith(PNG_MAGIC) and svg.stat().st_size > 0
