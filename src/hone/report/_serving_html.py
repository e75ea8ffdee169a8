"""The serving sweep in the HTML report: its table, the chosen configuration, and the
throughput-latency curve of every (candidate, configuration), the p99 target drawn across."""

from __future__ import annotations

from html import escape
from typing import Any

from hone.report._html_plots import Plot, to_svg

MARKERS = "osD^v<>ph*"


def serving_plot(sweep: Any) -> Plot:
    """p99 latency (log) against throughput: closed-loop levels joined in order of concurrency,
    Poisson points as open markers; the chosen point starred."""
    from hone._optional import is_available

    key = "plot-serving"
    if not is_available("matplotlib"):
        return Plot(key, None, ("plots need matplotlib, which is not installed: pip install 'hone[plot]'",))
    runs = [r for r in sweep.runs if any(p.p99_s is not None and p.ok for p in r.points)]
    if not runs:
        return Plot(key, None, ("no configuration answered any load level: nothing to draw",))
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 4.8), layout="constrained")
    ax = fig.subplots()
    cycle = [f"C{i}" for i in range(10)]
    for i, run in enumerate(runs):
        color, marker = cycle[i % 10], MARKERS[(i // 10) % len(MARKERS)]
        closed = sorted((p for p in run.points if p.mode == "concurrency" and p.p99_s), key=lambda p: p.level)
        opened = [p for p in run.points if p.mode == "poisson" and p.p99_s]
        ax.plot([p.throughput_per_s for p in closed], [p.p99_s * 1e3 for p in closed], marker=marker, color=color,
                linewidth=1.2, markersize=4, label=f"{run.candidate}: {run.config.tag}")
        ax.plot([p.throughput_per_s for p in opened], [p.p99_s * 1e3 for p in opened], marker=marker, color=color,
                linestyle="none", markerfacecolor="none", markersize=6)
    chosen = sweep.chosen
    if chosen:
        point = chosen["point"]
        ax.plot([point["throughput_per_s"]], [point["p99_s"] * 1e3], marker="*", color="black", markersize=14,
                linestyle="none", label="chosen")
    target = sweep.settings.get("max_p99_ms")
    if target:
        ax.axhline(target, color="tab:red", linestyle="--", linewidth=1, label=f"p99 target {target:g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("throughput (samples/s)")
    ax.set_ylabel("p99 latency incl. queueing (ms)")
    ax.grid(True, which="both", linewidth=0.3, alpha=0.5)
    ax.legend(fontsize=7, loc="best")
    notes = ("filled markers joined: closed-loop concurrency levels 1, 2, 4, ...; open markers: Poisson arrivals at "
             "fractions of the capacity; latency from the moment a request was due to its answer",)
    return Plot(key, to_svg(fig, key), notes)


def serving_section(result: Any) -> str:
    """The section for a run with a serving sweep (`RunInfo.serving`); "" without one."""
    from hone.report.serving import serving_rows
    from hone.serve.sweep import ServeSweep

    if not result.run.serving:
        return ""
    sweep = ServeSweep.from_dict(result.run.serving)
    head = "".join(f"<th>{escape(h)}</th>" for h in ("candidate", "configuration", "capacity", "best within target", "p99",
                                                      "note"))
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in serving_rows(sweep))
    lines = [f"{'Best effort' if sweep.best_effort else 'Chosen'}: {sweep.why}"]
    lines += [f"One call at a time, {label}: {single['throughput_per_s']:.4g}/s ({single['input_set']})"
              for label, single in sorted(sweep.single_request.items())]
    lines += [f"Not run: {s['candidate']} ({s['config']}): {s['why']}" for s in sweep.skipped]
    plot = serving_plot(sweep)
    figure = (f'<figure class="plot" id="{plot.key}"><figcaption>Serving: throughput against p99</figcaption>'
              f'{plot.svg or ""}' + "".join(f'<p class="notes">{escape(n)}</p>' for n in plot.notes) + "</figure>")
    return (f'<section id="serving"><h2>Serving sweep</h2>'
            + "".join(f"<p>{escape(line)}</p>" for line in lines)
            + f'<table class="serving"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{figure}</section>')
