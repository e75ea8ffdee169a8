"""The HTML report of a run: one self-contained file (inline style, script and SVG figures) that
opens offline and fetches nothing.

In page order: the verdict (winner, its speedup with the interval, why, the runner-up, when its
build cost pays off, the run's warnings, the machine and date), every candidate in a sortable
table with why each one lost, the recipes the plan left out, then the figures (_html_plots).
The wording comes from the selection and the console report, so the two reports agree.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

from hone.atomic import write_atomic
from hone.report._html_assets import CSP, CSS, SORT_JS
from hone.report import _cost_section as _cost
from hone.report._html_plots import Plot, all_plots
from hone.report._serving_html import serving_section
from hone.report._html_table import candidate_table, pruned_table
from hone.report.console import _cpu_name, fmt_time
from hone.search.run import OptimizeResult
from hone.search.select import payoffs


def _p(text: str, css: str = "") -> str:
    return f'<p class="{css}">{escape(text)}</p>' if css else f"<p>{escape(text)}</p>"


def _items(lines: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>"


def _title(result: OptimizeResult) -> str:
    run = result.run
    return (f"hone run {run.run_id}" if run.run_id is not None else "hone run") + f": {run.model}"


def _payoff_lines(result: OptimizeResult) -> list[str]:
    """What the winner costs to build beyond eager, and after how many calls that is repaid."""
    best = result.selection.best
    if best is None:
        return []
    if best.baseline:
        return ["eager is the reference: nothing to build beyond it"]
    lines = []
    for p in payoffs(result.results):
        if p.label != best.label:
            continue
        when = (f"pays off after {p.calls:,} calls ({fmt_time(p.saved_per_call_s)} saved per call)"
                if p.calls is not None else "never pays off (no faster than eager here)")
        lines.append(f"{p.input_set}: {p.extra_s:.2f} s of build and first call beyond eager's; {when}")
    return lines


def _selection_extras(result: OptimizeResult) -> list[str]:
    """Constraints, their misses and the Pareto front, where the selection carries them."""
    data = result.selection.to_dict()
    lines = []
    constraints = getattr(result.selection, "constraints", None)
    if hasattr(constraints, "describe"):
        lines.append(f"selected by: {constraints.describe()}")
    elif isinstance(data.get("constraints"), dict):
        lines.append("selected by: " + ", ".join(f"{k} {v}" for k, v in data["constraints"].items() if v is not None))
    misses = data.get("constraint_misses")
    if misses:
        pairs = misses.items() if isinstance(misses, dict) else ((str(m), "") for m in misses)
        lines += [f"misses a constraint: {label}" + (f": {why}" if why else "") for label, why in pairs]
    front = data.get("front")
    if front:
        labels = [f if isinstance(f, str) else f.get("label") if isinstance(f, dict) else f[0] for f in front]
        lines.append("Pareto front (latency, accuracy, memory): " + ", ".join(str(x) for x in labels))
    return lines


def _verdict(result: OptimizeResult) -> str:
    sel = result.selection
    if sel.best is None:
        return (f'<section id="verdict" class="verdict none"><p class="headline">No winner</p>'
                f"{_p(sel.why_best + '; nothing to recommend')}</section>")
    ranked = next((r for r in sel.ranking if r.recipe.key == sel.best.key), None)
    figure = ""
    if ranked is not None and ranked.recipe.baseline:
        figure = "1.00x: the eager fp32 baseline itself"
    elif ranked is not None:
        how = ("95 % interval, paired with eager" if ranked.paired
               else "interval from the IQR spread, against eager at the start")
        figure = f"{ranked.speedup:.2f}x eager fp32 ({ranked.low:.2f}-{ranked.high:.2f}x, {how})"
    # No candidate met every limit: the closest is named, and must not read as a plain win.
    title = "Best effort (misses a limit)" if getattr(sel, "best_effort", False) else "Winner"
    parts = [f'<p class="headline">{title}: {escape(sel.best.label)}'
             + (f' <span class="speedup">{escape(figure)}</span>' if figure else "") + "</p>",
             f"<p><b>Why it won:</b> {escape(sel.why_best)}</p>"]
    if sel.why_runner_up:
        parts.append(f"<p><b>Runner-up:</b> {escape(sel.why_runner_up)}</p>")
    payoff = _payoff_lines(result)
    if payoff:
        parts.append("<p><b>Cost to build, and when it pays off:</b></p>" + _items(payoff))
    extras = _selection_extras(result)
    if extras:
        parts.append(_items(extras))
    if sel.drift:
        parts.append(_p(sel.drift, "notes"))
    return f'<section id="verdict" class="verdict">{"".join(parts)}</section>'


def _warnings(result: OptimizeResult, status: str | None) -> str:
    run = result.run
    loud = [f"run {run.run_id} is {status}: {len(result.results)} result(s) recorded; the best is only the best "
            "of what ran (`hone optimize` with the same settings resumes it)"] if status and status != "finished" else []
    loud += list(run.warnings)
    notes = []
    if run.fp64_skipped:
        notes.append(f"fp32 tolerances not calibrated against float64: {run.fp64_skipped}")
    if run.nondeterministic:
        notes.append("eager fp32 run twice gave different outputs (non-deterministic model)")
    if run.batch_axes_note:
        notes.append(run.batch_axes_note)
    notes += [f"noise: {r.recipe.label} at {r.input_set}: {r.measurement.noise_warning}" for r in result.results
              if r.measurement is not None and r.measurement.noise_warning and r.stage != "screened"]
    body = (f'<div class="warnings">{_items(loud)}</div>' if loud else _p("no warnings"))
    if notes:
        body += f'<div class="notes">{_items(notes)}</div>'
    return f'<section id="warnings"><h2>Warnings</h2>{body}</section>'


def _machine(result: OptimizeResult) -> str:
    run, hw = result.run, result.run.hardware or {}
    rows: list[tuple[str, str]] = [("CPU", _cpu_name(hw))]
    cores = [f"{hw[k]} {k.removesuffix('_cores')}" for k in ("physical_cores", "logical_cores", "usable_cores") if hw.get(k)]
    if cores:
        rows.append(("cores", ", ".join(cores)))
    rows.append(("threads", str(run.threads)))
    rows.append(("device", run.device))
    gpus = [g.get("name", "?") for g in hw.get("gpus") or [] if isinstance(g, dict)]
    if gpus:
        rows.append(("GPU", ", ".join(gpus)))
    if hw.get("memory_bytes"):
        rows.append(("memory", f"{hw['memory_bytes'] / 1024**3:.1f} GiB"))
    rows.append(("date", run.created_at or "not recorded"))
    rows.append(("model", run.model + (f" ({run.workload})" if run.workload and run.workload != run.model else "")
                 + (f", task {run.task}" if run.task else "")))
    rows += [(f"inputs {label}", ", ".join(specs)) for label, specs in run.input_sets.items()]
    if run.eval_metric:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in run.reference_scores.items())
        rows.append(("eval metric", run.eval_metric + (f" (eager fp32: {scores})" if scores else "")))
    if run.profile:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in run.profile.get("shares", {}).items())
        rows.append(("profile", f"{run.profile.get('verdict', '?')}-bound at {run.profile.get('input_set', '?')} ({shares})"))
    rows += _cost.html_machine_rows(result)
    if run.versions:
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in sorted(run.versions.items()))))
    cells = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows)
    return f'<section id="machine"><h2>Machine and run</h2><dl class="machine">{cells}</dl></section>'


def _planned_because(result: OptimizeResult) -> str:
    origins = {r.recipe.label: r.recipe.origin for r in result.results if r.recipe.origin}
    if not origins:
        return ""
    return "<details><summary>why each recipe was planned</summary>" + _items(
        [f"{label}: {origin}" for label, origin in origins.items()]) + "</details>"


def _figure(plot: Plot) -> str:
    body = plot.svg if plot.svg is not None else ""
    notes = "".join(_p(n, "notes" if plot.svg is not None else "missing") for n in plot.notes)
    return (f'<figure class="plot" id="{escape(plot.key)}"><figcaption>{escape(plot.title)}</figcaption>'
            f"{body}{notes}</figure>")


def render_html(result: OptimizeResult, *, status: str | None = None) -> str:
    """The whole report as one HTML document. `status`: the stored run's status, when it is not
    "finished" the page says its best is only the best of what ran."""
    import hone

    figures = "".join(_figure(p) for p in all_plots(result))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(_title(result))}</title><style>{CSS}</style></head>
<body>
<header><h1>{escape(_title(result))}</h1>
<p class="meta">{escape(" · ".join(_meta(result)))}</p></header>
{_verdict(result)}
{_warnings(result, status)}
{_machine(result)}
<section id="candidates-section"><h2>Candidates</h2>
<p class="notes">Click a column header to sort by it. Speedups are against eager fp32 at the same input set.</p>
{candidate_table(result)}{_planned_because(result)}
<h2>Not planned</h2>{pruned_table(result)}</section>
{serving_section(result)}
<section id="plots"><h2>Plots</h2>{figures}</section>
<footer class="notes">hone {escape(hone.__version__)}</footer>
<script>{SORT_JS}</script>
</body></html>
"""


def _meta(result: OptimizeResult) -> list[str]:
    run = result.run
    return [part for part in (run.created_at, _cpu_name(run.hardware or {}), f"{run.threads} threads", run.device) if part]


def write_html(result: OptimizeResult, path: str | os.PathLike[str], *, status: str | None = None) -> Path:
    """Write the report to `path` atomically (temp file + rename): a reader never sees half a page."""
    # mkstemp's 0600 would hide a report meant to be shared
    return write_atomic(path, render_html(result, status=status), mode=0o666 & ~_umask())


def _umask() -> int:
    current = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(current)
    return current


__all__ = ["render_html", "write_html"]
