"""The HTML report's tables: every candidate (sortable), and the recipes the plan left out.

Cells show the console report's wording (its formatters are reused, so both reports agree to
the digit); each sortable cell also carries its raw value in data-sort, so a click on a header
orders by the figure, not by its text ("85.3 µs" before "1.20 ms").
"""

from __future__ import annotations

import math
from html import escape

from hone.report.console import (WINNER_MARK, _accuracy, _build_s, _fmt_throughput, _groups, _peak, _speedup,
                                 fmt_time)  # fmt: skip
from hone.report import _cost_section as _cost
from hone.report._html_plots import peak_bytes
from hone.search.result import CandidateResult, Status
from hone.search.run import OptimizeResult
from hone.search.select import Ranked, speedup_of

LOG_TAIL_CHARS = 4000  # of a failed candidate's log, in its folded cell

# (header, sort type): "number" sorts by data-sort as a float, "text" by the cell's text.
COLUMNS = (
    ("inputs", "number"), ("recipe", "text"), ("status", "text"), ("p50", "number"), ("p90", "number"),
    ("p99", "number"), ("throughput", "number"), ("speedup", "number"), ("accuracy", "number"),
    ("peak mem", "number"), ("build", "number"), ("why", "text"),
)  # fmt: skip


def _cell(text: str, sort: float | int | None = None, css: str = "") -> str:
    attrs = f' class="{css}"' if css else ""
    if sort is not None and math.isfinite(sort):
        attrs += f' data-sort="{sort!r}"'
    elif css == "num":
        attrs += ' data-sort=""'  # no figure: sorts last either way
    return f"<td{attrs}>{escape(text)}</td>"


def _why(r: CandidateResult, result: OptimizeResult) -> str:
    """Why this candidate is not the winner (or that it is): its own failure, the failure that
    rules its recipe out elsewhere, screening, or its place against the winner."""
    sel = result.selection
    label = r.recipe.label
    if sel.best is not None and r.recipe.key == sel.best.key:
        return "the winner"
    if not r.ok:
        known = f" (known from run {r.known_from}, not run again)" if r.known_from is not None else ""
        return f"{r.status.value}: {r.reason}{known}"
    if label in sel.losers:
        return sel.losers[label]
    if r.stage == "screened" and r.stage_reason:
        return r.stage_reason
    if r.recipe.baseline:
        return "the reference every speedup is measured against"
    ranked = {k.recipe.key: k for k in sel.ranking}
    mine, best = ranked.get(r.recipe.key), ranked.get(sel.best.key) if sel.best else None
    if mine is None or best is None:
        return r.reason
    return f"{_ranked_text(mine)} against {_ranked_text(best)} for {best.recipe.label} ({_noise(best, mine)})"


def _ranked_text(r: Ranked) -> str:
    return f"{r.speedup:.2f}x" + ("" if r.recipe.baseline else f" ({r.low:.2f}-{r.high:.2f}x)")


def _noise(best: Ranked, other: Ranked) -> str:
    return "slower beyond noise" if best.low > other.high else "within noise: the intervals overlap"


def _log(r: CandidateResult) -> str:
    """A failed candidate's stderr or traceback tail, folded: what to read before filing a bug."""
    tail = r.log_tail.strip()
    if r.ok or not tail or tail == r.reason.strip():
        return ""
    return f"<details><summary>log</summary><pre>{escape(tail[-LOG_TAIL_CHARS:])}</pre></details>"


def candidate_rows(result: OptimizeResult) -> list[str]:
    """One <tr> per candidate (recipe x input set), grouped as the console groups them."""
    best_key = result.selection.best.key if result.selection.best else None
    order = {label: i for i, label in enumerate(result.run.input_sets)}
    price = _cost.price_of(result)
    rows = []
    for label, group in _groups(result):
        baseline = next((r for r in group if r.recipe.baseline), None)
        for r in group:
            m = r.measurement if r.ok else None  # a failed candidate's timing means nothing
            speedup = speedup_of(r, baseline)
            winner = r.recipe.key == best_key
            status = r.status.value + (" (screened)" if r.stage == "screened" else "")
            error = r.verdict.error if r.verdict is not None and r.ok else None
            peak = peak_bytes(m) if m else None
            build = (m.build_s + m.first_call_s) if m else None
            cells = [
                _cell(label, order.get(label, len(order))),
                f'<td class="recipe" title="{escape(r.recipe.origin)}">{escape((WINNER_MARK + " ") if winner else "")}'
                f"{escape(r.recipe.label)}</td>",
                f'<td class="status {escape(r.status.value)}">{escape(status)}</td>',
                _cell(fmt_time(m.p50 if m else None), m.p50 if m else None, "num"),
                _cell(fmt_time(m.p90 if m else None), m.p90 if m else None, "num"),
                _cell(fmt_time(m.p99 if m else None), m.p99 if m else None, "num"),
                _cell(_fmt_throughput(m.throughput if m else None), m.throughput if m else None, "num"),
                *([_cell(_cost.cell(r, price).plain, _cost.cost_of(m, price), "num")] if price else []),
                _cell(_speedup(r, speedup), speedup, "num"),
                _cell(_accuracy(r) if r.ok or r.status is Status.WRONG_ANSWER else "-", error, "num acc"),
                _cell(_peak(r) if m else "-", peak, "num"),
                _cell(_build_s(r) if m else "-", build, "num"),
                f'<td class="why">{escape(_why(r, result))}{_log(r)}</td>',
            ]
            rows.append(f'<tr class="{"winner" if winner else ""}" data-status="{escape(r.status.value)}">'
                        + "".join(cells) + "</tr>")
    return rows


def candidate_table(result: OptimizeResult) -> str:
    if not result.results:
        return '<p class="missing">no candidate results were recorded</p>'
    head = "".join(f'<th data-type="{kind}" tabindex="0">{escape(name)}</th>'
                   for name, kind in _cost.html_columns(COLUMNS, result))
    return (f'<div class="scroll"><table id="candidates" class="sortable"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(candidate_rows(result))}</tbody></table></div>")


def pruned_table(result: OptimizeResult) -> str:
    pruned = result.run.pruned
    if not pruned:
        return '<p class="missing">the plan left no recipe out</p>'
    rows = "".join(f"<tr><td>{escape(label)}</td><td>{escape(why)}</td></tr>" for label, why in pruned.items())
    return (f'<table id="pruned" class="sortable"><thead><tr><th data-type="text" tabindex="0">recipe</th>'
            f'<th data-type="text" tabindex="0">why not run</th></tr></thead><tbody>{rows}</tbody></table>')
