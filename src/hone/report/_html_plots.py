"""The HTML report's figures, drawn with matplotlib and inlined as SVG (no script, no fetch).

Each figure comes back as a Plot: its SVG, or None with a line saying what the run lacks to
draw it (one input set, no profile, no memory figure, no matplotlib). matplotlib is optional
(extra "plot") and imported inside the drawing functions, so `import hone` never loads it.
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
from collections.abc import Callable

from hone.bench.measurement import Measurement, _quantile
from hone.profiler.plot import BOUND_COLORS, UNKNOWN_COLOR
from hone.search.pareto import Point, front
from hone.search.result import CandidateResult
from hone.search.run import OptimizeResult

WIDTH_IN = 9.0
ROW_IN = 0.32  # height per candidate row in the latency figure
PANEL_MIN_IN = 1.6
WINNER_COLOR = "tab:green"
OTHER_COLOR = "tab:blue"
DIM_COLOR = "tab:gray"
FRONT_COLOR = "tab:orange"
LOG_AXIS_RATIO = 20.0  # figures spanning more than this factor get a log axis
MARKER_MIN_PT2 = 30.0  # Pareto marker area for the smallest peak memory
MARKER_MAX_PT2 = 400.0  # ... and for the largest
MIN_LABELLED_SHARE = 0.08  # profile bar segments narrower than this go unlabelled (the text says them)
# fp32 rounding (search.pareto.ERROR_FLOOR) is the linear part of the error axis: an exact
# candidate (error 0) and a 1e-7 one sit together at the bottom, int8's 1e-2 far above.
ERROR_LINTHRESH = 1e-6
TITLES = {  # in page order
    "plot-latency": "Latency per candidate",
    "plot-pareto": "Pareto front: latency, accuracy, memory",
    "plot-profile": "Profile: where eager's time goes",
    "plot-batch": "Batch scaling",
}
SVG_ID = re.compile(r'\bid="([^"]+)"')


@dataclasses.dataclass(frozen=True)
class Plot:
    key: str  # element id in the page: "plot-latency", one of TITLES
    svg: str | None  # inline <svg>, None when the run lacks what the figure needs
    notes: tuple[str, ...] = ()  # what the figure shows, or what is missing and how to get it

    @property
    def title(self) -> str:
        return TITLES[self.key]


def peak_bytes(m: Measurement) -> int | None:
    """Device memory on a GPU (the scarce one there), the worker's peak RSS on a CPU."""
    return m.peak_device_bytes if m.peak_device_bytes is not None else m.peak_rss_bytes


def measured(result: OptimizeResult) -> list[CandidateResult]:
    """Passing candidates with a timing: the only ones whose figures mean anything."""
    return [r for r in result.results if r.ok and r.measurement is not None and r.measurement.n > 0]


def input_set_order(result: OptimizeResult) -> list[str]:
    order = list(result.run.input_sets)
    order += [s for s in dict.fromkeys(r.input_set for r in result.results) if s not in order]
    return order


def to_svg(fig, key: str) -> str:
    """The figure as an <svg> element for inlining: no XML prolog or DOCTYPE (whose DTD address
    a page must not carry), no metadata, text kept as text (small, searchable) and every id
    prefixed with `key`, since several figures share one document and ids must stay unique."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": key}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    ids = set(SVG_ID.findall(svg))
    svg = SVG_ID.sub(lambda m: f'id="{key}-{m.group(1)}"', svg)
    svg = re.sub(r'(href="#|url\(#)([^")]+)',
                 lambda m: m.group(1) + (f"{key}-{m.group(2)}" if m.group(2) in ids else m.group(2)), svg)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{key}" ', 1)


def _figure(height_in: float):
    from matplotlib.figure import Figure

    # A bare Figure renders without pyplot: no global backend switch, no figure registry to leak.
    return Figure(figsize=(WIDTH_IN, max(height_in, PANEL_MIN_IN)), layout="constrained")


def _wide(values: list[float]) -> bool:
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) / min(positive) > LOG_AXIS_RATIO


def _ms(seconds: float) -> float:
    return seconds * 1e3


def latency(result: OptimizeResult, best_key: str | None) -> Plot:
    """Per input set: each passing candidate's p50 (dot), IQR (thick bar) and p10-p90 (whisker)."""
    rows = measured(result)
    if not rows:
        return Plot("plot-latency", None, ("no candidate passed with a timing: nothing to draw",))
    sets = [s for s in input_set_order(result) if any(r.input_set == s for r in rows)]
    per_set = {s: sorted((r for r in rows if r.input_set == s), key=lambda r: r.measurement.p50, reverse=True)
               for s in sets}  # fmt: skip
    fig = _figure(sum(ROW_IN * len(v) + 0.9 for v in per_set.values()))
    axes = fig.subplots(len(sets), 1, squeeze=False, height_ratios=[len(per_set[s]) + 1.5 for s in sets])[:, 0]
    for ax, label in zip(axes, sets):
        group = per_set[label]
        for y, r in enumerate(group):
            m = r.measurement
            q25, q75 = _quartiles(m)
            color = WINNER_COLOR if r.recipe.key == best_key else DIM_COLOR if r.stage == "screened" else OTHER_COLOR
            ax.plot([_ms(m.p10), _ms(m.p90)], [y, y], color=color, linewidth=1)
            ax.plot([_ms(q25), _ms(q75)], [y, y], color=color, linewidth=5, alpha=0.5, solid_capstyle="butt")
            ax.plot([_ms(m.p50)], [y], "o", color=color, markersize=5)
        ax.set_yticks(range(len(group)), [r.recipe.label for r in group], fontsize=8)
        ax.set_ylim(-0.7, len(group) - 0.3)
        if _wide([_ms(r.measurement.p10) for r in group] + [_ms(r.measurement.p90) for r in group]):
            ax.set_xscale("log")
        ax.set_title(f"{label}: {', '.join(result.run.input_sets.get(label, []))}", fontsize=9, loc="left")
        ax.grid(True, axis="x", which="both", linewidth=0.3, alpha=0.5)
    axes[-1].set_xlabel("latency per call (ms): dot p50, bar p25-p75, whisker p10-p90")
    notes = ["green: the winner; grey: screened out (a short measurement, not timed in full); "
             "failed candidates have no timing and are left out"]
    return Plot("plot-latency", to_svg(fig, "plot-latency"), tuple(notes))


def _quartiles(m: Measurement) -> tuple[float, float]:
    ordered = tuple(sorted(m.times_s))
    return _quantile(ordered, 0.25), _quantile(ordered, 0.75)


def pareto_points(result: OptimizeResult, input_set: str) -> list[Point]:
    return [Point(r.recipe.label, r.measurement.p50, r.verdict.error, float(peak_bytes(r.measurement) or 0))
            for r in measured(result) if r.input_set == input_set and r.verdict is not None]  # fmt: skip


def front_labels(result: OptimizeResult, input_set: str) -> tuple[set[str], str]:
    """The front's labels: the selection's own where it carries one, else search.pareto's at
    this input set; and which of the two it is."""
    given = result.selection.to_dict().get("front")
    if given:
        labels = set()
        for item in given:
            if isinstance(item, str):
                labels.add(item)
            elif isinstance(item, dict) and "label" in item:
                labels.add(str(item["label"]))
            elif isinstance(item, (list, tuple)) and item:
                labels.add(str(item[0]))
        if labels:
            return labels, "the selection's front"
    return {p.label for p in front(pareto_points(result, input_set))}, "search.pareto's front at this input set"


def pareto(result: OptimizeResult) -> Plot:
    """Latency against accuracy error per input set, marker area = peak memory, front in colour."""
    sets = [s for s in input_set_order(result) if pareto_points(result, s)]
    if not sets:
        return Plot("plot-pareto", None, ("no passing candidate with a timing and a verdict: nothing to draw",))
    fig = _figure(3.6)
    axes = fig.subplots(1, len(sets), squeeze=False)[0]
    memory_known, source = False, ""
    for ax, label in zip(axes, sets):
        points = pareto_points(result, label)
        on_front, source = front_labels(result, label)
        largest = max(p.peak_bytes for p in points)
        memory_known = memory_known or largest > 0
        for p in sorted(points, key=lambda p: p.label in on_front):
            size = (MARKER_MIN_PT2 + (MARKER_MAX_PT2 - MARKER_MIN_PT2) * p.peak_bytes / largest) if largest > 0 else 60.0
            chosen = p.label in on_front
            ax.scatter([_ms(p.p50_s)], [p.error], s=size, alpha=0.75 if chosen else 0.4,
                       c=FRONT_COLOR if chosen else DIM_COLOR, edgecolors="black", linewidths=0.5)  # fmt: skip
            ax.annotate(p.label, (_ms(p.p50_s), p.error), xytext=(4, 4), textcoords="offset points", fontsize=7)
        line = sorted((p for p in points if p.label in on_front), key=lambda p: p.p50_s)
        if len(line) > 1:
            ax.plot([_ms(p.p50_s) for p in line], [p.error for p in line], color=FRONT_COLOR, linewidth=1, alpha=0.6)
        if _wide([_ms(p.p50_s) for p in points]):
            ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=ERROR_LINTHRESH)
        # A decade of room above the largest error, so a run of exact candidates is not a
        # squashed line under an axis that climbs to 1e-1.
        ax.set_ylim(-ERROR_LINTHRESH / 2, max(max(p.error for p in points), ERROR_LINTHRESH) * 10)
        ax.margins(x=0.2)  # room for the labels of the outermost points
        ax.set_title(label, fontsize=9, loc="left")
        ax.set_xlabel("p50 latency (ms)")
        ax.grid(True, which="major", linewidth=0.3, alpha=0.5)
    axes[0].set_ylabel("accuracy error vs fp32")
    notes = [f"orange: on the front ({source}): no other candidate is as fast, as close to fp32 and as small; "
             "error is the task metric's distance from fp32 where there is a metric, else 1 - the worst cosine"]
    notes.append("marker area: peak memory" if memory_known
                 else "no peak memory was measured in this run: every marker has the same size")
    return Plot("plot-pareto", to_svg(fig, "plot-pareto"), tuple(notes))


def batch_scaling(result: OptimizeResult, best_key: str | None) -> Plot:
    """Latency and throughput against batch size, for each recipe measured at several sizes."""
    by_recipe: dict[str, dict[int, CandidateResult]] = {}
    for r in measured(result):
        by_recipe.setdefault(r.recipe.key, {})[r.measurement.batch_size] = r
    curves = {k: dict(sorted(v.items())) for k, v in by_recipe.items() if len(v) > 1}
    if not curves:
        sizes = sorted({r.measurement.batch_size for r in measured(result)})
        have = f"batch size {sizes[0]}" if len(sizes) == 1 else "no batch size with a passing candidate" if not sizes \
            else "no recipe passed at two of them"
        return Plot("plot-batch", None, (
            f"needs one recipe measured at several batch sizes; this run has {have} "
            "(hone optimize MODEL --batch-sizes 1,8,64)",))
    fig = _figure(3.2)
    lat_ax, thr_ax = fig.subplots(1, 2)
    for key, points in curves.items():
        sizes = list(points)
        label = next(iter(points.values())).recipe.label
        style = dict(marker="o", markersize=4, linewidth=2 if key == best_key else 1, label=label)
        lat_ax.plot(sizes, [_ms(points[b].measurement.p50) for b in sizes], **style)
        thr_ax.plot(sizes, [points[b].measurement.throughput for b in sizes], **style)
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, ScalarFormatter

    sizes = sorted({b for points in curves.values() for b in points})
    for ax, ylabel in ((lat_ax, "p50 latency per call (ms)"), (thr_ax, "throughput (samples/s at p50)")):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(sizes))  # the batch sizes measured, as plain numbers
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yscale("log")
        # Plain figures ("0.4", "20000"), and 2 and 5 of each decade labelled: a span under a
        # decade has no major tick to read it by.
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(_two_and_five))
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", linewidth=0.3, alpha=0.5)
    thr_ax.legend(fontsize=7, loc="best")
    left_out = len({r.recipe.key for r in measured(result)}) - len(curves)
    notes = ["recipes that passed at one batch size only are left out" + (f" ({left_out})" if left_out else "")]
    return Plot("plot-batch", to_svg(fig, "plot-batch"), tuple(notes))


def _two_and_five(value: float, _position: int) -> str:
    mantissa = round(value / 10 ** math.floor(math.log10(value)), 6) if value > 0 else 0
    return f"{value:g}" if mantissa in (2, 5) else ""


def profile(result: OptimizeResult, peaks: dict | None) -> Plot:
    """Where eager's time went (the stored profile summary): bound shares and the op mix. The
    summary keeps no per-op FLOPs or bytes, so it cannot place ops on a roofline."""
    summary = result.run.profile
    roofline = "the roofline (each op's FLOP/byte against this machine's measured peaks"
    if peaks and peaks.get("fp32_gflops") and peaks.get("bandwidth_gbs"):
        roofline += f": {float(peaks['fp32_gflops']):.0f} GFLOP/s fp32, {float(peaks['bandwidth_gbs']):.1f} GB/s"
    roofline += ") needs the per-op records, which a run does not store: `hone profile MODEL --plot roofline` draws it"
    if not summary or not summary.get("shares"):
        return Plot("plot-profile", None, ("this run kept no profile (its recipes were named explicitly, "
                                          "profiling was off, or the profiler failed)", roofline))
    shares = {k: float(v) for k, v in summary["shares"].items()}
    mix = {name.removeprefix("aten::"): float(v) for name, v in (summary.get("op_mix") or {}).items()}
    fig = _figure(1.0 + ROW_IN * max(len(mix), 3))
    share_ax, mix_ax = fig.subplots(1, 2, width_ratios=[1, 1.4])
    left = 0.0
    for bound, share in shares.items():
        share_ax.barh([0], [share], left=left, height=0.6, color=BOUND_COLORS.get(bound, UNKNOWN_COLOR))
        if share >= MIN_LABELLED_SHARE:  # a thinner segment has no room for its name
            share_ax.text(left + share / 2, 0, f"{bound}\n{share:.0%}", ha="center", va="center", fontsize=8, color="white")
        left += share
    share_ax.set_xlim(0, max(1.0, left))
    share_ax.set_ylim(-0.5, 0.5)
    share_ax.set_yticks([])
    share_ax.set_xlabel("share of wall time")
    share_ax.set_title(f"{summary.get('verdict', '?')}-bound at {summary.get('input_set', '?')}", fontsize=9, loc="left")
    if mix:
        names = list(mix)[::-1]
        mix_ax.barh(range(len(names)), [mix[n] for n in names], color=OTHER_COLOR)
        mix_ax.set_yticks(range(len(names)), names, fontsize=8)
        mix_ax.set_xlabel("share of op time")
        mix_ax.set_title("op types that took the most time", fontsize=9, loc="left")
    else:
        mix_ax.set_axis_off()
        mix_ax.text(0.5, 0.5, "no op mix in the stored profile", ha="center", transform=mix_ax.transAxes)
    notes = [roofline]
    if summary.get("reused_from_run"):
        notes.insert(0, f"profile reused from run {summary['reused_from_run']}: same model, machine and versions")
    return Plot("plot-profile", to_svg(fig, "plot-profile"), tuple(notes))


def all_plots(result: OptimizeResult) -> list[Plot]:
    """Every figure of the report, in page order; without matplotlib each says so instead."""
    from hone._optional import is_available

    best_key = result.selection.best.key if result.selection.best else None
    peaks = (result.run.hardware or {}).get("peaks")
    makers: dict[str, Callable[[], Plot]] = {
        "plot-latency": lambda: latency(result, best_key),
        "plot-pareto": lambda: pareto(result),
        "plot-profile": lambda: profile(result, peaks),
        "plot-batch": lambda: batch_scaling(result, best_key),
    }
    if not is_available("matplotlib"):
        why = "plots need matplotlib, which is not installed: pip install 'hone[plot]'"
        return [Plot(key, None, (why,)) for key in TITLES]
    return [_drawn(key, makers[key]) for key in TITLES]


def _drawn(key: str, make: Callable[[], Plot]) -> Plot:
    # The report is written at the end of every run: a figure that cannot be drawn from some
    # unforeseen run says why in its place, and costs neither the page nor the run.
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - shown in the page, never swallowed
        return Plot(key, None, (f"could not draw this figure: {type(exc).__name__}: {exc}",))
