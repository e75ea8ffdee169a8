"""`hone cost`'s terminal page: the run's $ / 1M per candidate, the break-even of an owned device,
and the projection onto other hardware with this machine's measured/projected check."""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from hone.cost.arithmetic import fmt_usd
from hone.cost.projection import LABEL, Point
from hone.cost.run_cost import CostReport
from hone.report.console import WINNER_MARK, _fmt_throughput, fmt_time


def _table(*columns: str) -> Table:
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i < 2 else "right", no_wrap=i >= 2)
    return table


def _candidates(report: CostReport) -> Table:
    table = _table("inputs", "recipe", "p50", "throughput", "$ / 1M")
    shown = ""
    for c in report.candidates:
        mark = f"{WINNER_MARK} " if c.winner else "  "
        cost = fmt_usd(c.usd_per_million) + (" (its best)" if c.best_set else "")
        table.add_row(Text(c.input_set if c.input_set != shown else ""), Text(mark + c.label), fmt_time(c.p50_s),
                      _fmt_throughput(c.throughput_per_s), cost)
        shown = c.input_set
    return table


def _point(p: Point | None) -> list[str]:
    if p is None:
        return ["-", "-", "-", "-"]
    return [fmt_time(p.latency_s), _fmt_throughput(p.throughput), fmt_usd(p.usd_per_million), p.binding]


def _priced(p) -> str:
    t = p.target
    if t.usd_per_hour is None:
        return "no price"
    return f"{t.instance or 'your price'} ${t.usd_per_hour:.4g}/h" + (" per GPU" if t.kind == "gpu" else "")


def projection_table(report: CostReport) -> Table:
    table = _table("target", "priced as", "bs1 latency", "bs1 /s", "bs1 $/1M", "bs1 bound",
                   "best bs", "latency", "/s", "$/1M", "bound")
    for p in report.projections:
        best = p.best
        table.add_row(Text(p.target.name), Text(_priced(p)), *_point(p.batch1), str(best.batch) if best else "-",
                      *_point(best))
    return table


def _checks(report: CostReport) -> Table:
    table = _table("inputs", "recipe", "measured p50", "projected", "measured / projected")
    for c in report.checks:
        table.add_row(Text(c.input_set), Text(c.label), fmt_time(c.measured_s), fmt_time(c.projected_s), f"{c.ratio:.2f}x")
    return table


def renderable(report: CostReport) -> RenderableType:
    title = f"hone cost: run {report.run_id}" if report.run_id is not None else "hone cost"
    parts: list[RenderableType] = [Text.assemble((title, "bold"), f"  {report.model}")]
    parts.append(Text(report.price.describe() if report.price else "no price for this machine: --instance or "
                      "--price-per-hour", "" if report.price else "yellow"))
    parts.append(Text("$ / 1M: the instance busy all the time at the measured throughput (one inference = one sample)",
                      "dim"))
    parts += [Text(""), _candidates(report) if report.candidates else Text("no passing candidate", "yellow")]
    if report.break_even is not None:
        parts += [Text(""), Text.assemble(("break-even: ", "bold"), report.break_even.text),
                  Text(f"  against {report.against}", "dim")]
        if report.break_even.lifetime_usd_per_million is not None:
            parts.append(Text(f"  the device's own cost over its lifetime, busy all the time: "
                              f"{fmt_usd(report.break_even.lifetime_usd_per_million)} / 1M", "dim"))
    if report.projections:
        precision = report.projections[0].precision
        parts += [Text(""), Text(f"Which hardware ({LABEL}; {precision})", "bold"),
                  Text(report.fit_note, "dim"), projection_table(report)]
        notes = [f"  {p.target.name}: {n}" for p in report.projections for n in p.notes]
        parts += [Text(n, "dim") for n in notes]
        parts.append(Text("bound: the term holding most of the lower bound (compute: FLOPs / peak; memory: bytes / "
                          "bandwidth; overhead: a fixed cost per op, an assumption)", "dim"))
    if report.checks:
        parts += [Text(""), Text("Checked against this machine (measured here / projected for here; >= 1 expected of "
                                 "eager, a fused or lower-precision winner can go below)", "bold"), _checks(report)]
    parts += [Text(n, "yellow") for n in report.notes]
    return Group(*parts)


def render_cost(report: CostReport, console: Console | None = None) -> None:
    console = console or Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(renderable(report))
