"""The terminal report: one table of every candidate, grouped by input set, then why the winner won
and why each loser lost.

Every cell is a rich Text, never markup: reasons and input specs contain brackets
("int64[8, 128]") that rich would otherwise read as style tags.
"""

from __future__ import annotations

import io
import math
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from hone.report import _cost_section as _cost
from hone.search.result import CandidateResult, Status
from hone.search.run import OptimizeResult
from hone.search.select import payoffs, speedup_of
from hone.validate.verdict import Verdict

TEXT_WIDTH = 140  # render_text(): wide enough for every column without wrapping reasons
MAX_CELL_REASON = 40  # longer reasons are cut in the table; the full text follows it
WINNER_MARK = "★"
MIB = 1024 * 1024

STATUS_STYLE = {
    Status.OK: "green",
    Status.WRONG_ANSWER: "red",
    Status.CRASHED: "red",
    Status.TIMEOUT: "yellow",
    Status.OOM: "yellow",
    Status.UNSUPPORTED: "dim",
}


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def fmt_time(seconds: float | None) -> str:
    """Three significant figures in the unit that fits: 85.3 µs, 4.27 ms, 42.7 ms, 427 ms, 1.23 s."""
    if not _finite(seconds):
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1.0:
        ms = seconds * 1e3
        return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"
    return f"{seconds:.2f} s"


def _fmt_throughput(per_s: float | None) -> str:
    if not _finite(per_s):
        return "-"
    return f"{per_s:.2f}/s" if per_s < 10 else f"{per_s:.1f}/s" if per_s < 1000 else f"{per_s:,.0f}/s"


def _fmt_mib(n_bytes: int | None) -> str:
    if n_bytes is None:
        return "-"
    mib = n_bytes / MIB
    return f"{mib:.1f} MiB" if mib < 10 else f"{mib:,.0f} MiB"


def _shorten(text: str, limit: int = MAX_CELL_REASON) -> str:
    line = " ".join(text.split())  # a reason may hold a newline or a traceback fragment
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _wrong(v: Verdict) -> str:
    """The figure that failed, before any prose: the cell is narrow and the number matters."""
    if v.metric is not None and not v.metric.passed:
        return f"{v.metric.name} {v.metric.value:.3f} (Δ {v.metric.delta:+.3f}) over budget"
    failed = [o for o in v.outputs if not o.passed]
    if not failed:
        return _shorten(v.reason)
    o = failed[0]
    where = f"{o.name}: " if len(v.outputs) > 1 else ""
    if o.nonfinite:
        return f"{where}{o.nonfinite} NaN/Inf"
    return _shorten(f"{where}max err {o.max_abs_err:.1e} (atol {o.atol:.0e})")


def _accuracy(r: CandidateResult) -> str:
    if r.status is Status.WRONG_ANSWER and r.verdict is not None:
        return _wrong(r.verdict)
    if not r.ok:
        return _shorten(r.reason)
    v = r.verdict
    if v is None:
        return _shorten(r.reason) if r.reason else "-"
    errors = [o.max_abs_err for o in v.outputs if _finite(o.max_abs_err)]
    tensors = (f"max err {max(errors):.0e}" if max(errors) > 0 else "exact") if errors else ""
    if v.metric is not None:
        # Four decimals: a cosine of 0.9999 against 1.0 is the whole story of a bf16 candidate.
        metric = f"{v.metric.name} {v.metric.value:.4f} Δ{v.metric.delta:+.4f}"
        return f"{metric} {tensors.replace('max err', 'err')}" if tensors else metric
    return tensors or _shorten(v.reason)


def _build_s(r: CandidateResult) -> str:
    m = r.measurement
    if m is None:
        return "-"
    total = m.build_s + m.first_call_s
    shown = f"{total:.2f} s" if total < 10 else f"{total:.0f} s"
    if r.build and r.build.get("loaded_from_run") is not None:
        return f"{shown} (loaded)"  # an earlier run's artifact, not built in this one
    return shown


def _peak(r: CandidateResult) -> str:
    m = r.measurement
    if m is None:
        return "-"
    # On a GPU the device memory is the scarce one; the host RSS is what a CPU run costs.
    return _fmt_mib(m.peak_device_bytes if m.peak_device_bytes is not None else m.peak_rss_bytes)


def _groups(result: OptimizeResult) -> list[tuple[str, list[CandidateResult]]]:
    order = list(result.run.input_sets)
    for r in result.results:  # sets the RunInfo does not name still get shown, last
        if r.input_set not in order:
            order.append(r.input_set)
    groups = []
    for label in order:
        rows = [r for r in result.results if r.input_set == label]
        if not rows:
            continue
        # Fastest passing candidates first; failures after, in the order they ran.
        ok = sorted((r for r in rows if r.ok and r.measurement), key=lambda r: r.measurement.p50)  # type: ignore[union-attr]
        rest = [r for r in rows if r not in ok]
        groups.append((label, ok + rest))
    return groups


# (name, justify, shown on narrow terminals): under FULL_WIDTH columns the table keeps the ones
# needed to pick a winner rather than squeezing every cell into an ellipsis.
COLUMNS = [
    ("inputs", "left", True), ("recipe", "left", True), ("status", "left", True),
    ("p50", "right", True), ("p90", "right", False), ("throughput", "right", False),
    (_cost.COLUMN, "right", False), ("speedup", "right", True), ("peak mem", "right", False), ("build", "right", False),
    ("accuracy check", "left", True),
]  # fmt: skip
FULL_WIDTH = 130
MIN_FREE_WIDTH = 14  # the accuracy column never shrinks below this, even if the line overflows


def _cells(r: CandidateResult, label: str, winner: bool, baseline: CandidateResult | None) -> dict[str, Text]:
    m = r.measurement if r.ok else None  # a failed candidate's timing means nothing
    speedup = speedup_of(r, baseline)
    return {
        "inputs": Text(label, style="bold"),
        "recipe": Text(f"{WINNER_MARK} {r.recipe.label}" if winner else f"  {r.recipe.label}",
                       style="bold" if winner else ""),
        "status": Text(r.status.value + (" (screened)" if r.stage == "screened" else ""),
                       style=STATUS_STYLE.get(r.status, "yellow")),
        "p50": Text(fmt_time(m.p50 if m else None)),
        "p90": Text(fmt_time(m.p90 if m else None)),
        "throughput": Text(_fmt_throughput(m.throughput if m else None)),
        "speedup": Text(_speedup(r, speedup)),
        "peak mem": Text(_peak(r)),
        "build": Text(_build_s(r)),
        "accuracy check": Text(_accuracy(r)),
    }  # fmt: skip


def _speedup(r: CandidateResult, speedup: float | None) -> str:
    """"2.51x", and for a paired one its 95 % interval's half-width: "2.51x±4%"."""
    if not _finite(speedup):
        return "-"
    if r.paired is None or r.recipe.baseline:
        return f"{speedup:.2f}x"
    low, high = r.paired.interval()
    return f"{speedup:.2f}x±{(high - low) / 2 / speedup:.0%}"


def _table(result: OptimizeResult, width: int) -> Table:
    best_key = result.selection.best.key if result.selection.best else None
    price = _cost.price_of(result)  # the $ / 1M column only where the run has a price
    columns = [(n, j) for n, j, narrow in COLUMNS if (narrow or width >= FULL_WIDTH) and (n != _cost.COLUMN or price)]
    rows: list[tuple[dict[str, Text], bool]] = []
    groups = _groups(result)
    for g, (label, group) in enumerate(groups):
        baseline = next((r for r in group if r.recipe.baseline), None)
        for i, r in enumerate(group):
            cells = _cells(r, label if i == 0 else "", r.recipe.key == best_key, baseline)
            cells[_cost.COLUMN] = _cost.cell(r, price)
            rows.append((cells, i == len(group) - 1 and g < len(groups) - 1))
    # Figures and labels keep their full width; only the free-text column gives way. Rich only
    # shrinks wrapping columns and would crop the line instead, so its width is set here.
    fits = {n: max([len(n)] + [c[n].cell_len for c, _ in rows]) for n, _ in columns}
    fixed = sum(w for n, w in fits.items() if n != "accuracy check") + 3 * (len(columns) - 1)
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    for name, justify in columns:
        free = name == "accuracy check"
        table.add_column(
            name, justify=justify, no_wrap=True, overflow="ellipsis",  # type: ignore[arg-type]
            min_width=None if free else fits[name], max_width=max(MIN_FREE_WIDTH, width - fixed) if free else None,
        )  # fmt: skip
    for cells, end_section in rows:
        table.add_row(*(cells[n] for n, _ in columns), end_section=end_section)
    return table


def _cpu_name(hw: dict[str, Any]) -> str:
    return hw.get("cpu_name") or "unknown CPU"


def _header(result: OptimizeResult) -> Text:
    run = result.run
    title = f"hone run {run.run_id}" if run.run_id is not None else "hone run"
    lines = [
        Text.assemble((title, "bold"), f"  {run.created_at}" if run.created_at else ""),
        Text(f"model: {run.model}" + (f" ({run.workload})" if run.workload and run.workload != run.model else "")
             + (f", task {run.task}" if run.task else "")),
        Text(f"device: {run.device}, threads: {run.threads}, hardware: {_cpu_name(run.hardware)}"),
    ]  # fmt: skip
    for label, specs in run.input_sets.items():
        lines.append(Text(f"inputs {label}: {', '.join(specs)}"))
    if run.eval_metric:
        scores = ", ".join(f"{k} {v:.3f}" for k, v in run.reference_scores.items())
        lines.append(Text(f"eval metric: {run.eval_metric}" + (f" (eager fp32: {scores})" if scores else "")))
    for key, what in (("calibration_file", "calibration data"), ("eval_file", "eval data")):
        given = run.provenance.get(key)  # data the user gave as a file: which one, exactly
        if given:
            lines.append(Text(f"{what}: {given['path']} ({given['samples']} samples, sha256 {given['sha256'][:12]})"))
    unusual = {n: a for n, a in run.output_batch_axes.items() if a != 0}
    if unusual:  # batch-first is the rule; say where the model departs from it
        axes = ", ".join(f"{n} {'none (compared whole)' if a is None else f'dim {a}'}" for n, a in unusual.items())
        lines.append(Text(f"output batch axes: {axes}"))
    if run.batch_axes_note:
        lines.append(Text(f"note: {run.batch_axes_note}", "yellow"))
    if run.profile:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in run.profile["shares"].items())
        reused = run.profile.get("reused_from_run")
        source = f", from run {reused}: same model, machine and versions" if reused else ""
        lines.append(Text(f"profile ({run.profile['input_set']}{source}): {run.profile['verdict']}-bound ({shares} of wall time)"))
    for warning in run.warnings:
        lines.append(Text(f"WARNING: {warning}", "bold yellow"))
    if run.fp64_skipped:
        lines.append(Text(f"note: fp32 tolerances not calibrated against float64: {run.fp64_skipped}", "yellow"))
    if run.nondeterministic:
        lines.append(Text("note: eager fp32 run twice gave different outputs (non-deterministic model)", "yellow"))
    return Text("\n").join(lines)


def _footer(result: OptimizeResult) -> Text:
    sel = result.selection
    lines: list[Text] = []
    if sel.best is None:
        lines.append(Text.assemble(("best: none", "bold red"), f" ({sel.why_best}); nothing to recommend"))
    elif sel.best_effort:
        lines.append(Text.assemble(("best effort: ", "bold yellow"), sel.why_best))
    else:
        lines.append(Text.assemble(("best: ", "bold green"), sel.why_best))
    if len(sel.front) > 1:
        lines.append(Text("Pareto front (latency, accuracy, memory: none of these is beaten on all three): "
                          + ", ".join(_front_point(p) for p in sel.front)))
    if sel.why_runner_up:
        lines.append(Text.assemble(("runner-up: ", "bold"), sel.why_runner_up))
    if sel.drift:
        lines.append(Text(sel.drift, "dim"))
    planned_because = {r.recipe.label: r.recipe.origin for r in result.results if r.recipe.origin}
    if planned_because:
        lines.append(Text("planned because:", "bold"))
        lines.extend(Text(f"  {label}: {origin}") for label, origin in planned_because.items())
    # Passing candidates only: a rejected retry's origin already says how many it kept.
    kept = {r.recipe.label: r.recipe.kept_float for r in result.results if r.recipe.kept_float and r.ok}
    if kept:
        lines.append(Text("kept in float (quantization left these layers alone):", "bold"))
        lines.extend(Text(f"  {label}: {', '.join(names)}") for label, names in kept.items())
    lines.extend(_compiler_lines(result))
    for label, why in result.run.pruned.items():
        lines.append(Text(f"  not planned: {label}: {why}", "dim"))
    if sel.losers:
        lines.append(Text("not selected:", "bold"))
        for label, why in sel.losers.items():
            lines.append(Text(f"  {label}: {why}"))
            # The selection names the first failure only; other sets may have failed otherwise.
            lines.extend(
                Text(f"    also {r.status.value} at {r.input_set}: {r.reason}")
                for r in result.results
                if r.recipe.label == label and not r.ok and r.reason not in why
            )
    screened = [r for r in result.results if r.ok and r.stage == "screened"]
    if screened:
        lines.append(Text("screened out (a short measurement, clearly slower than the best so far, is their figure):", "bold"))
        lines.extend(Text(f"  {r.recipe.label}: {r.stage_reason}", "dim") for r in screened)
    for r in result.results:
        if r.measurement is not None and r.measurement.noise_warning and r.stage != "screened":
            lines.append(Text(f"noise: {r.recipe.label} at {r.input_set}: {r.measurement.noise_warning}", "yellow"))
    lines.extend(_cost.lines(result))
    builds = _builds_line(result)
    if builds is not None:
        lines.append(builds)
    return Text("\n").join(lines)


def _front_point(point: dict) -> str:
    memory = f", {point['peak_bytes'] / 2**20:.0f} MiB" if point.get("peak_bytes") else ""
    return f"{point['label']} ({point['speedup']:.2f}x, error {point['error']:.2g}{memory})"


def _compiler_lines(result: OptimizeResult) -> list[Text]:
    """For candidates that pay a one-time cost (compile, tuning, engine build): what it was,
    after how many calls it has paid off, and what the compiler reported (graph breaks, a
    trace that does not generalise, ops left to PyTorch), at the largest input set."""
    paying = {(p.label, p.input_set): p for p in payoffs(result.results) if p.extra_s >= 1.0}
    if not paying:
        return []
    largest = list(result.run.input_sets)[-1] if result.run.input_sets else None
    lines = [Text(f"one-time cost and when it pays off against eager ({largest}):", "bold")]
    for r in result.results:
        p = paying.get((r.recipe.label, r.input_set))
        if p is None or r.input_set != largest:
            continue
        when = (f"pays off after {p.calls:,} calls ({fmt_time(p.saved_per_call_s)} saved per call)"
                if p.calls is not None else "never pays off (no faster than eager)")
        notes = [f"{p.extra_s:.1f} s", when, *_compiler_notes(r)]
        lines.append(Text(f"  {r.recipe.label}: " + "; ".join(notes)))
    return lines


def _compiler_notes(r: CandidateResult) -> list[str]:
    """What the runner said of its build (Runner.summary: graph breaks, tuning time, what fell
    back), shortened for one line."""
    return [_shorten(note, 160) for note in r.summary]


def _builds_line(result: OptimizeResult) -> Text | None:
    builds, candidates = result.build_count()
    if not candidates:
        return None
    return Text(f"{builds} build{'s' if builds != 1 else ''} for {candidates} candidate{'s' if candidates != 1 else ''}"
                " (a build serves every input set its runner takes)", "dim")


def renderable(result: OptimizeResult, width: int = TEXT_WIDTH) -> RenderableType:
    """Header, table and verdict lines as one rich renderable, for a console `width` wide."""
    parts: list[RenderableType] = [_header(result), Text("")]
    if result.results:
        parts.append(_table(result, width))
    else:
        parts.append(Text("no candidate results were recorded", "yellow"))
    parts += [Text(""), _footer(result)]
    if result.run.serving:  # hone optimize --serve-sweep
        from hone.report.serving import serving_renderable
        from hone.serve.sweep import ServeSweep

        parts.append(serving_renderable(ServeSweep.from_dict(result.run.serving)))
    return Group(*parts)


def render(result: OptimizeResult, console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped or logged: rich would assume 80 columns and drop figures
            console = Console(width=TEXT_WIDTH)
    console.print(renderable(result, console.width))


def render_text(result: OptimizeResult) -> str:
    """The same report as plain text (no colour), e.g. for OptimizeResult.table() or a log."""
    buf = io.StringIO()
    console = Console(file=buf, width=TEXT_WIDTH, color_system=None, force_terminal=False, legacy_windows=False)
    console.print(renderable(result, TEXT_WIDTH))
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"
