"""Structured pruning, measured: each ratio and criterion, with and without recovery, and the
best prune + int8 stacks beside int8 alone, in one hone run per model.

    python benchmarks/pruning.py [MODEL ...] > section.md     (default: digits-cnn minilm hf:resnet-50)

Every candidate runs in its own worker like any other; speedups are the paired ratios to eager
fp32 of that run (geometric mean over the batch sizes). A candidate over the accuracy budget is
not measured in full: its figure is its screening measurement over eager's, marked "(screened)".
hf:resnet-50 has random weights and no labels: it is judged by top-1 agreement with the fp32
model on 32 random images (`top1_agreement`), and recovers by distillation on 32 others.
"""

from __future__ import annotations

import datetime
import math
import sys
import time

import torch

import hone
from hone.models.workload import EvalSet

CRITERIA = ("l1", "l2", "taylor", "random")
# Per model: the recipes measured. A full sweep of criteria on digits-cnn (fast to build); on
# the slow models the criteria's control (random) and the recovery at the middle ratio.
SWEEPS = {
    "digits-cnn": [f"prune-{c}-{r}{raw}" for c in CRITERIA for r in (10, 30, 50) for raw in ("", "-raw")]
    + ["pt2e-int8", "prune-l1-30+pt2e-int8", "ort-int8-static", "prune-l1-30+ort-int8-static", "sparse-50", "sparse-80"],
    "minilm": ["prune-l1-10", "prune-l1-30", "prune-l1-30-raw", "prune-random-30", "prune-taylor-30", "prune-l1-50",
               "ort-int8-dynamic", "prune-l1-30+ort-int8-dynamic", "pt2e-int8", "prune-l1-30+pt2e-int8", "sparse-50"],
    "hf:resnet-50": ["prune-l1-10-raw", "prune-l1-30-raw", "prune-l1-50-raw", "prune-random-30-raw", "prune-l1-30",
                     "ort-int8-static", "prune-l1-30+ort-int8-static", "sparse-50"],
}
BATCH_SIZES = {"digits-cnn": (1, 64), "minilm": (1, 8), "hf:resnet-50": (1,)}


def _extra(model: str) -> dict:
    """An eval set (and calibration) for a model that has none: agreement with fp32."""
    if model != "hf:resnet-50":
        return {}
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(64, 3, 224, 224, generator=generator)
    return {"eval": EvalSet({"pixel_values": images[:32]}, "top1_agreement",
                            description="32 random images, top-1 agreement with fp32"),
            "calibration": {"pixel_values": images[32:]}}


def _geomean(values: list[float]) -> float | None:
    return math.exp(sum(map(math.log, values)) / len(values)) if values and all(v > 0 for v in values) else None


def section(model: str) -> str:
    recipes = SWEEPS[model]
    started = time.perf_counter()
    result = hone.optimize(model, batch_sizes=BATCH_SIZES[model], recipes=recipes, store=False, fallback_attempts=0,
                           time_budget_s=None, progress=False, **_extra(model))
    wall = time.perf_counter() - started
    eager = {r.input_set: r for r in result.results if r.recipe.baseline}
    ranked = {r.recipe.key: r for r in result.selection.ranking}
    rows: dict[str, list] = {}
    for r in result.results:
        rows.setdefault(r.recipe.key, []).append(r)
    hw = result.run.hardware
    lines = [
        f"#### `{model}` (batch {', '.join(map(str, BATCH_SIZES[model]))})",
        "",
        f"- machine: {hw.get('cpu_name')}, {result.run.threads} threads; date {datetime.date.today().isoformat()}; "
        f"whole run {wall:.0f} s; command `python benchmarks/pruning.py {model}`",
        "",
        "| recipe | FLOPs removed | params | speedup over eager | metric | status | recovery |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, results in rows.items():
        first = results[0]
        if first.recipe.baseline:
            continue
        notes = first.runner_info.get("steps", {}).get("structured_prune", {})
        flops = f"{notes['flops_removed']:.0%}" if notes else "-"
        params = f"{notes['params_after'] / 1e6:.2f}M of {notes['params_before'] / 1e6:.2f}M" if notes else "-"
        speed = "-"
        if key in ranked:
            speed = f"{ranked[key].speedup:.2f}x ({ranked[key].low:.2f}-{ranked[key].high:.2f})"
        else:  # over the budget: its screening time over eager's, at the sets it was screened at
            ratios = [eager[r.input_set].measurement.p50 / r.screen_p50_s for r in results
                      if r.screen_p50_s and r.input_set in eager and eager[r.input_set].measurement]
            figure = _geomean(ratios)
            speed = f"{figure:.2f}x (screened)" if figure else "-"
        metric = first.verdict.metric if first.verdict is not None else None
        score = f"{metric.name} {metric.value:.4f} (fp32 {metric.reference:.4f})" if metric else "-"
        recovery = notes.get("recovery", {}) if notes else {}
        recovered = (f"{recovery['method']}, {recovery['steps']} steps, {recovery['seconds']:.0f} s, "
                     f"loss {recovery['initial_loss']:.3g} -> {recovery['final_loss']:.3g}"
                     if recovery.get("steps") else ("none" if notes else "-"))
        status = first.status.value if all(r.status is first.status for r in results) else "/".join(r.status.value for r in results)
        if first.status.value not in ("ok", "wrong_answer"):
            status += f": {first.reason[:80]}"
        lines.append(f"| {first.recipe.label} | {flops} | {params} | {speed} | {score} | {status} | {recovered} |")
    lines += ["", f"best: {result.selection.why_best}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    for name in sys.argv[1:] or ["digits-cnn", "minilm", "hf:resnet-50"]:
        print(section(name), flush=True)
