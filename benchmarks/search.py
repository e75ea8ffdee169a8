"""Does the default search find what an exhaustive one finds, in a fraction of the time?

    python benchmarks/search.py [--stores DIR] [MODEL ...] > section.md   (default: minilm digits-cnn)

Per model, in one script run: an exhaustive sweep (no time budget, a fresh store), the default
`hone optimize` (a second fresh store), then the default again over that second store (the
history and the prior at work). Printed as a BENCHMARKS.md section with the targets checked:

- the default run's winner is the exhaustive run's, or within the exhaustive winner's interval
  as the exhaustive run measured both;
- the default run takes at most a third of the exhaustive run's wall time (and, on MiniLM, at
  most 180 s);
- the second default run takes at most half the first's time and picks the same winner.

Timing is noisy on shared machines: each figure is a ratio within this one script run. The stores
are kept (under --stores, default a new temporary directory, printed) so that a MISS can be traced
with `hone report --store ...`; each default run's order of measured candidates is printed too.
"""

from __future__ import annotations

import datetime
import platform
import sys
import tempfile
import time
from pathlib import Path

import hone

MINILM_TARGET_S = 180.0


def _run(model: str, store: Path, **kw):
    started = time.perf_counter()
    result = hone.optimize(model, store=store, progress=False, **kw)
    return result, time.perf_counter() - started


def _ranked(result, label: str):
    return next((r for r in result.selection.ranking if r.recipe.label == label), None)


def _cell(result, wall: float) -> str:
    best = result.selection.best
    ranked = _ranked(result, best.label) if best else None
    if ranked is None:
        return f"{wall:.0f} s | none | - |"
    return f"{wall:.0f} s | {best.label} | {ranked.speedup:.2f}x ({ranked.low:.2f}-{ranked.high:.2f}) |"


def section(model: str, stores: Path) -> list[str]:
    exhaustive, t_all = _run(model, stores / f"{model}-exhaustive.db", time_budget_s=None)
    first, t_first = _run(model, stores / f"{model}-default.db")
    second, t_second = _run(model, stores / f"{model}-default.db")
    best = exhaustive.selection.best
    top = _ranked(exhaustive, best.label) if best else None
    pick = first.selection.best
    as_measured = _ranked(exhaustive, pick.label) if pick else None
    same_or_within = bool(best and pick and (pick.key == best.key or (as_measured and top and as_measured.high >= top.low)))
    checks = [
        ("default winner = exhaustive winner, or within its interval", same_or_within),
        (f"default wall <= 1/3 of exhaustive ({t_first:.0f} s vs {t_all:.0f} s)", t_first <= t_all / 3),
        (f"second default wall <= 1/2 of the first ({t_second:.0f} s vs {t_first:.0f} s)", t_second <= t_first / 2),
        ("second default: same winner", bool(pick and second.selection.best and second.selection.best.key == pick.key)),
    ]
    if model == "minilm":
        checks.append((f"default wall <= {MINILM_TARGET_S:.0f} s ({t_first:.0f} s)", t_first <= MINILM_TARGET_S))
    counts = lambda r: f"{len({x.recipe.key for x in r.results})} recipes, {len(r.run.pruned)} left out"  # noqa: E731
    lines = [
        "| model | run | wall | winner | speedup (interval) | recipes |",
        "|---|---|---|---|---|---|",
        f"| {model} | exhaustive (`--time-budget 0`) | {_cell(exhaustive, t_all)} {counts(exhaustive)} |",
        f"| {model} | default | {_cell(first, t_first)} {counts(first)} |",
        f"| {model} | default, second run (same store) | {_cell(second, t_second)} {counts(second)} |",
        "",
        *[f"- {'PASS' if ok else 'MISS'}: {what}" for what, ok in checks],
        f"- the default run measured, in order: {_order(first)}",
        f"- where the second run's time went: {_time_by_recipe(second, t_second)}",
        "",
    ]
    return lines


def _order(result) -> str:
    """Each recipe the run executed, in the order it first ran, with its speedup or status."""
    speedups = {r.recipe.key: r.speedup for r in result.selection.ranking}
    parts: dict[str, str] = {}
    for r in result.results:
        figure = speedups.get(r.recipe.key)
        parts.setdefault(r.recipe.key, f"{r.recipe.label} {figure:.2f}x" if figure is not None else f"{r.recipe.label} ({r.status})")
    return ", ".join(parts.values()) or "nothing"


def _time_by_recipe(result, wall: float) -> str:
    """Worker seconds per recipe (and its largest stages), and what the parent spent besides."""
    spent: dict[str, float] = {}
    stages: dict[str, dict[str, float]] = {}
    for r in result.results:
        spent[r.recipe.label] = spent.get(r.recipe.label, 0.0) + r.wall_s
        for name, seconds in r.stages_s.items():
            stages.setdefault(r.recipe.label, {})[name] = stages.get(r.recipe.label, {}).get(name, 0.0) + seconds
    parts = []
    for label, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
        if seconds < 0.5:
            continue
        top = sorted(stages.get(label, {}).items(), key=lambda kv: -kv[1])[:3]
        parts.append(f"{label} {seconds:.0f} s ({', '.join(f'{n} {v:.0f} s' for n, v in top)})")
    parts.append(f"outside the workers {max(0.0, wall - sum(spent.values())):.0f} s")
    return "; ".join(parts)


def main(argv: list[str]) -> None:
    from hone.hardware import probe

    if argv[:1] == ["--stores"]:
        stores, models = Path(argv[1]), argv[2:]
        stores.mkdir(parents=True, exist_ok=True)
    else:
        stores, models = Path(tempfile.mkdtemp(prefix="hone-search-bench-")), argv
    models = models or ["minilm", "digits-cnn"]

    hw = probe(measure_peaks=False)
    print(f"- machine: {hw.cpu_name}, {hw.physical_cores} physical cores; date {datetime.date.today().isoformat()}; "
          f"python {platform.python_version()}")
    print(f"- command: `python benchmarks/search.py {' '.join(models)}`")
    print(f"- stores kept in {stores}", file=sys.stderr)
    print()
    for model in models:
        print("\n".join(section(model, stores)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
