"""The serving sweep in the terminal: one row per (candidate, configuration) with its capacity
and its best point within the p99 target, then the chosen configuration and why."""

from __future__ import annotations

from typing import Any

from hone.report.console import fmt_time


def _rate(value: float) -> str:
    return f"{value:.3g}/s" if value < 1000 else f"{value:,.0f}/s"


def serving_rows(sweep: Any) -> list[list[str]]:
    """[candidate, configuration, capacity, best point within the target, its p99, note] per run."""
    target = sweep.settings.get("max_p99_ms")
    rows = []
    for run in sweep.runs:
        if run.error:
            rows.append([run.candidate, run.config.tag, "-", "-", "-", f"failed: {run.error.splitlines()[0][:120]}"])
            continue
        clean = [p for p in run.points if p.clean and p.p99_s is not None]
        within = [p for p in clean if target is None or p.p99_s * 1e3 <= target]
        best = max(within, key=lambda p: p.throughput_per_s, default=None)
        unclean = [p for p in run.points if not p.clean]
        note = ", ".join(f"{p.describe()}: {p.ok}/{p.sent} ok" + (f", {p.dropped} dropped" if p.dropped else "")
                         for p in unclean)
        if best is None:
            rows.append([run.candidate, run.config.tag, _rate(run.capacity), "none within target", "-", note])
        else:
            load = f"c={int(best.level)}" if best.mode == "concurrency" else f"{best.level:.3g}/s Poisson"
            batch = f", {best.mean_batch_requests:.1f} req/batch" if best.mean_batch_requests else ""
            rows.append([run.candidate, run.config.tag, _rate(run.capacity), f"{_rate(best.throughput_per_s)} at {load}{batch}",
                         fmt_time(best.p99_s), note])
    return rows


def serving_renderable(sweep: Any) -> Any:
    """The serving sweep (a serve.sweep.ServeSweep) as one rich renderable."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    target = sweep.settings.get("max_p99_ms")
    title = f"serving sweep ({sweep.wall_s:.0f} s" + (f", p99 target {target:g} ms" if target else "") + ")"
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    for name in ("candidate", "configuration", "capacity", "best within target" if target else "best", "p99", "note"):
        table.add_column(name, justify="right" if name in ("capacity", "p99") else "left", no_wrap=name != "note")
    for row in serving_rows(sweep):
        table.add_row(*(Text(cell) for cell in row))
    lines = [f"one call at a time, {label}: {_rate(single['throughput_per_s'])} "
             f"({single['input_set']}, p50 {fmt_time(single['p50_s'])})" for label, single in sorted(sweep.single_request.items())]
    lines += [f"not run: {skip['candidate']} ({skip['config']}): {skip['why']}" for skip in sweep.skipped]
    lines.append(f"{'serving best effort' if sweep.best_effort else 'serving best'}: {sweep.why}")
    return Group(Text(""), Text(title), table, *(Text(line) for line in lines))


def render_serving(console: Any, sweep: Any) -> None:
    """Print the serving sweep on a rich console."""
    console.print(serving_renderable(sweep))
