"""Render a Profile: per op type, top individual ops, the whole-model verdict, batch scaling,
memory, and the ranked advice the planner follows."""

from __future__ import annotations

import io

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from hone.profiler.records import OpStat, Profile
from hone.report.console import fmt_time

TEXT_WIDTH = 180
BOUND_STYLE = {"compute": "green", "memory": "yellow", "overhead": "red", "": "dim"}


def _op_table(title: str, ops: list[OpStat], wall_s: float, individual: bool) -> Table:
    """Figures are never cut (their columns keep a minimum width); only op, shapes and unit
    names give way, with an ellipsis, when the console is narrow."""
    table = Table(title=title, title_justify="left", header_style="bold")
    columns = [
        ("op", None), ("shapes", None) if individual else ("calls", 5), ("time", 9), ("share", 6), ("GFLOP", 7),
        ("MB", 7), ("FLOP/B", 6), ("GFLOP/s", 7), ("GB/s", 6), ("%peak", 5), ("class", 8), ("unit", None),
    ]  # fmt: skip
    for name, width in columns:
        text = width is None or name == "class"
        table.add_column(
            name, justify="left" if text else "right", no_wrap=True, overflow="ellipsis", min_width=width,
            max_width={"op": 30, "shapes": 22, "unit": 22}.get(name),
        )
    for op in ops:
        table.add_row(
            op.name,
            op.shapes if individual else str(op.calls),
            fmt_time(op.time_s),
            f"{op.time_s / wall_s:.1%}" if wall_s > 0 else "-",
            f"{op.flops / 1e9:.2f}" if op.flops else "-",
            f"{op.bytes / 1e6:.1f}",
            f"{op.intensity:.1f}" if op.intensity is not None else "-",
            f"{op.flops_per_s / 1e9:.1f}" if op.flops else "-",
            f"{op.bytes_per_s / 1e9:.1f}",
            f"{op.pct_of_peak:.0%}" if op.pct_of_peak is not None else "-",
            Text(op.bound or "?", BOUND_STYLE.get(op.bound, "")),
            op.unit or "-",
        )
    return table


def renderable(profile: Profile, top: int = 15) -> RenderableType:
    shares = ", ".join(f"{k} {v:.0%}" for k, v in profile.shares.items())
    head = [
        Text.assemble(("hone profile", "bold"), f"  {profile.model} @ {profile.input_set}, {profile.device}, {profile.threads} threads"),
        Text.assemble(
            ("verdict: ", "bold"), (f"{profile.verdict}-bound", BOUND_STYLE.get(profile.verdict, "")),
            f" ({shares} of wall time); forward {fmt_time(profile.wall_s)}, ops {fmt_time(profile.op_time_s)}, "
            f"overhead {fmt_time(profile.overhead_s)}",
        ),
    ]  # fmt: skip
    peaks = profile.peaks
    if peaks:
        roofs = ", ".join(
            f"{label} {peaks[key]:.0f} GFLOP/s" for key, label in (("fp32_gflops", "fp32"), ("bf16_gflops", "bf16"), ("int8_gops", "int8")) if peaks.get(key)
        )
        head.append(Text(f"roofline: {roofs}; bandwidth {peaks.get('bandwidth_gbs', 0):.1f} GB/s (measured by `hone doctor`)"))
    parts: list[RenderableType] = [Text("\n").join(head), Text("")]
    parts.append(_op_table("by op type", profile.ops[:top], profile.wall_s, individual=False))
    parts.append(_op_table(f"top {min(top, len(profile.top_ops))} individual ops", profile.top_ops[:top], profile.wall_s, individual=True))
    if profile.scaling:
        scaling = Table(title="latency by batch size", title_justify="left", header_style="bold")
        for name in ("batch", "latency", "per sample"):
            scaling.add_column(name, justify="right")
        for point in profile.scaling:
            scaling.add_row(str(point.batch_size), fmt_time(point.latency_s), fmt_time(point.per_sample_s))
        parts.append(scaling)
    if profile.memory:
        mem = profile.memory
        stages = ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in mem.peak_by_stage.items())
        lines = [Text(f"memory: weights {mem.weights_bytes / 2**20:.1f} MiB; peak by stage: {stages}")]
        lines += [
            Text(f"  {t.kind:10} {t.bytes / 2**20:8.2f} MiB  {t.dtype:9} {list(t.shape)}  {t.name}") for t in mem.largest
        ]
        parts.append(Text("\n").join(lines))
    if profile.advice:
        lines = [Text("advice (the steps hone optimize tries first):", "bold")]
        lines += [Text(f"  {a.rank}. {a.step}: {a.reason}\n     finding: {a.finding}") for a in profile.advice]
        parts.append(Text("\n").join(lines))
    if profile.notes:
        parts.append(Text("\n").join(Text(f"note: {n}", "yellow") for n in profile.notes))
    return Group(*parts)


def render(profile: Profile, console: Console | None = None, top: int = 15) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=TEXT_WIDTH)
    console.print(renderable(profile, top))


def render_text(profile: Profile, top: int = 15) -> str:
    buf = io.StringIO()
    Console(file=buf, width=TEXT_WIDTH, color_system=None, force_terminal=False).print(renderable(profile, top))
    return buf.getvalue()
