"""Structured pruning, measured: each ratio and criterion, with and without recovery, and the
best prune + int8 stacks beside int8 alone, in one hone run per model.

    python benchmarks/pruning.py [MODEL ...] > section.md     (default: digits-cnn minilm hf:resnet-50)

Every candidate runs in its own worker like any other; speedups are the paired ratios to eager
fp32 of that run (geometric mean over the batch sizes). The run accepts any accuracy, so that
every candidate is timed (a pruned model over budget is still the figure a lower ratio trades
against); the table says which ones the default budget (0.01) would accept.
hf:resnet-50 has random weights and no labels: it is judged by top-1 agreement with the fp32
model on 32 random images (`top1_agreement`), and recovers by distillation on 32 others.
"""

from __future__ import annotations

import datetime
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
    + ["onnxruntime", "prune-l1-30+onnxruntime", "pt2e-int8", "prune-l1-30+pt2e-int8", "ort-int8-static",
       "prune-l1-30+ort-int8-static", "sparse-50", "sparse-80"],
    "minilm": ["prune-l1-10", "prune-l1-30", "prune-l1-30-raw", "prune-random-30", "prune-taylor-30", "prune-l1-50",
               "ort-int8-dynamic", "prune-l1-30+ort-int8-dynamic", "pt2e-int8", "prune-l1-30+pt2e-int8", "sparse-50"],
    "hf:resnet-50": ["prune-l1-10-raw", "prune-l1-30-raw", "prune-l1-50-raw", "prune-random-30-raw", "prune-l1-30",
                     "ort-int8-static", "prune-l1-30+ort-int8-static", "sparse-50"],
}
BATCH_SIZES = {"digits-cnn": (1, 64), "minilm": (1, 8), "hf:resnet-50": (1,)}
BUDGET = 0.01  # hone's default accuracy budget: the "within budget" column


def _extra(model: str) -> dict:
    """An eval set (and calibration) for a model that has none: agreement with fp32."""
    if model != "hf:resnet-50":
        return {}
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(64, 3, 224, 224, generator=generator)
    return {"eval": EvalSet({"pixel_values": images[:32]}, "top1_agreement",
                            description="32 random images, top-1 agreement with fp32"),
            "calibration": {"pixel_values": images[32:]}}


def section(model: str) -> str:
    recipes = SWEEPS[model]
    started = time.perf_counter()
    result = hone.optimize(model, batch_sizes=BATCH_SIZES[model], recipes=recipes, store=False, fallback_attempts=0,
                           time_budget_s=None, progress=False, accuracy_budget=0.999, **_extra(model))
    wall = time.perf_counter() - started
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
        "| recipe | FLOPs removed | params | speedup over eager | metric | within 0.01 | recovery |",
        "|---|---|---|---|---|---|---|",
    ]
    best: tuple[str, float] | None = None
    for key, results in rows.items():
        first = results[0]
        if first.recipe.baseline:
            continue
        notes = first.runner_info.get("steps", {}).get("structured_prune", {})
        flops = f"{notes['flops_removed']:.0%}" if notes else "-"
        params = f"{notes['params_after'] / 1e6:.2f}M of {notes['params_before'] / 1e6:.2f}M" if notes else "-"
        speed = f"{ranked[key].speedup:.2f}x ({ranked[key].low:.2f}-{ranked[key].high:.2f})" if key in ranked else "-"
        metric = first.verdict.metric if first.verdict is not None else None
        score = f"{metric.name} {metric.value:.4f} (fp32 {metric.reference:.4f})" if metric else "-"
        drop = (metric.reference - metric.value) if metric else None
        status = first.status.value if first.status.value != "ok" else ("yes" if drop is not None and drop <= BUDGET else "no")
        if first.status.value != "ok":
            status += f": {first.reason[:80]}"
        elif key in ranked and status == "yes" and (best is None or ranked[key].speedup > best[1]):
            best = (first.recipe.label, ranked[key].speedup)
        recovery = notes.get("recovery", {}) if notes else {}
        recovered = (f"{recovery['method']}, {recovery['steps']} steps, {recovery['seconds']:.1f} s, "
                     f"loss {recovery['initial_loss']:.3g} -> {recovery['final_loss']:.3g}"
                     if recovery.get("steps") else ("none" if notes else "-"))
        lines.append(f"| {first.recipe.label} | {flops} | {params} | {speed} | {score} | {status} | {recovered} |")
    lines += ["", f"fastest within the budget: {best[0]} {best[1]:.2f}x" if best else "nothing within the budget", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    for name in sys.argv[1:] or ["digits-cnn", "minilm", "hf:resnet-50"]:
        print(section(name), flush=True)
