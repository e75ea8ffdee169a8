"""Roofline plot of a Profile: one point per op type against this machine's measured roofs.

matplotlib is optional (extra "plot"): it is imported inside plot_roofline so that hone and
`hone profile` without --plot work with torch alone.
"""

from __future__ import annotations

import math
from pathlib import Path

from hone._optional import require
from hone.profiler.records import OpStat, Profile

FORMATS = (".png", ".svg")
FIGSIZE_IN = (9.0, 6.0)
DPI = 150  # PNG only; the SVG is vector
LABELLED_OPS = 8  # the ops that took the most time get their name written next to them
MIN_MARKER_PT2 = 20.0  # marker area for an op with ~0 % of op time, so it stays visible
MAX_MARKER_PT2 = 900.0  # marker area for an op with 100 % of op time
AXIS_MARGIN = 4.0  # factor of room left/right of the outermost point or ridge on the log axes
# Measured compute roofs, each drawn as a ceiling; (peaks key, label).
COMPUTE_ROOFS = (("fp32_gflops", "fp32"), ("bf16_gflops", "bf16"), ("int8_gops", "int8"))
BOUND_COLORS = {"compute": "tab:red", "memory": "tab:blue", "overhead": "tab:gray"}
UNKNOWN_COLOR = "tab:purple"
ROOF_COLOR = "black"


def _plotted(profile: Profile) -> list[OpStat]:
    """Ops a roofline can place: they did work, moved bytes and took time (log axes need > 0)."""
    return [op for op in profile.ops if op.flops > 0 and op.bytes > 0 and op.time_s > 0]


def _roofs(peaks: dict) -> tuple[list[tuple[str, float]], float | None]:
    """[(label, GFLOP/s)] for each measured compute peak, and the bandwidth in GB/s (or None)."""
    roofs = [(label, float(peaks[key])) for key, label in COMPUTE_ROOFS if peaks.get(key)]
    bandwidth = peaks.get("bandwidth_gbs")
    return roofs, (float(bandwidth) if bandwidth else None)


def _x_range(intensities: list[float], ridges: list[float]) -> tuple[float, float]:
    xs = intensities + ridges
    if not xs:
        return 0.1, 100.0  # nothing to place: a conventional window around typical ridges
    return min(xs) / AXIS_MARGIN, max(xs) * AXIS_MARGIN


def _title(profile: Profile, has_roofs: bool) -> str:
    title = f"{profile.model} @ {profile.input_set} ({profile.device}, {profile.threads} threads): {profile.verdict}-bound"
    if not has_roofs:
        title += "\nno measured peaks: points only, no roofline (run `hone doctor` to measure them)"
    return title


def plot_roofline(profile: Profile, path_stem: Path) -> list[Path]:
    """Write the roofline as path_stem.with_suffix('.png') and '.svg'; return both paths.

    x = arithmetic intensity (FLOP/byte), y = attained GFLOP/s, both log. Each measured compute
    peak is a horizontal ceiling from its ridge point; bandwidth is the slope below it.
    """
    require("matplotlib", "plot")
    # A bare Figure renders through Agg (PNG) and the SVG backend, without pyplot: no global
    # backend switch, no figure registry to leak, no display needed.
    from matplotlib.figure import Figure

    ops = _plotted(profile)
    roofs, bandwidth = _roofs(profile.peaks)
    ridges = [peak / bandwidth for _, peak in roofs] if bandwidth else []
    x_lo, x_hi = _x_range([op.intensity or 0.0 for op in ops], ridges)

    fig = Figure(figsize=FIGSIZE_IN, layout="constrained")
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_lo, x_hi)

    if bandwidth and roofs:
        top_ridge = max(ridges)
        ax.plot([x_lo, top_ridge], [bandwidth * x_lo, bandwidth * top_ridge], color=ROOF_COLOR, linewidth=1.5)
        ax.annotate(f"{bandwidth:.1f} GB/s", (math.sqrt(x_lo * top_ridge), bandwidth * math.sqrt(x_lo * top_ridge)),
                    rotation=30, fontsize=8, ha="right", va="bottom")  # fmt: skip
    for (label, peak), ridge in zip(roofs, ridges or [x_lo] * len(roofs)):
        ax.plot([ridge, x_hi], [peak, peak], color=ROOF_COLOR, linewidth=1.5, linestyle="-" if label == "fp32" else "--")
        ax.annotate(f"{label} {peak:.0f} GFLOP/s", (x_hi, peak), fontsize=8, ha="right", va="bottom")

    total_s = sum(op.time_s for op in ops) or 1.0
    for bound in sorted({op.bound for op in ops}):
        group = [op for op in ops if op.bound == bound]
        ax.scatter(
            [op.intensity for op in group],
            [op.flops_per_s / 1e9 for op in group],
            s=[MIN_MARKER_PT2 + (MAX_MARKER_PT2 - MIN_MARKER_PT2) * op.time_s / total_s for op in group],
            c=BOUND_COLORS.get(bound, UNKNOWN_COLOR),
            alpha=0.7,
            edgecolors="black",
            linewidths=0.5,
            label=f"{bound}-bound" if bound else "not classified",
        )
    for op in sorted(ops, key=lambda o: o.time_s, reverse=True)[:LABELLED_OPS]:
        name = op.name.removeprefix("aten::")
        ax.annotate(name, (op.intensity, op.flops_per_s / 1e9), xytext=(5, 5), textcoords="offset points", fontsize=8)

    if not ops:
        ax.set_ylim(1.0, max([p for _, p in roofs], default=100.0) * AXIS_MARGIN)
        ax.text(0.5, 0.5, "no op with FLOPs, bytes and time to place", transform=ax.transAxes, ha="center")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("attained GFLOP/s")
    ax.set_title(_title(profile, bool(roofs)), fontsize=10)
    ax.grid(True, which="both", linewidth=0.3, alpha=0.5)
    if ops:
        ax.legend(loc="lower right", fontsize=8, title="marker area = share of op time", title_fontsize=8)

    path_stem.parent.mkdir(parents=True, exist_ok=True)
    written = [path_stem.with_suffix(suffix) for suffix in FORMATS]
    for path in written:
        fig.savefig(path, dpi=DPI)
    return written
