"""Measure stacks the composer adds to the default plan (bf16+inductor, pt2e-int8+aoti,
ort-int8-static+onnxruntime-basic, ...) beside eager and the single-step recipes they stack, in
one run per model, and print a BENCHMARKS.md section.

    python benchmarks/stacks.py minilm digits-cnn hf:resnet-50 > section.md

Every speedup is a ratio to eager fp32 measured in the same run; batch 1 and 8 unless
--batch-sizes says otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import time

import hone
from hone.search.select import speedup_of


# The stacks the composer added (issue: recipes compose), most telling first: a time budget
# cuts from the end.
STACKS = ("channels-last+inductor", "channels-last+aoti", "bf16+inductor", "bf16+aoti", "pt2e-int8+aoti",
          "torchao-int8-weight-only+aoti", "ort-int8-static+onnxruntime-extended", "ort-int8-static+onnxruntime-basic")


def stacks_of(model: str, batch_sizes: tuple[int, ...], wanted: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The wanted stacks this model and machine compose and can run, and the single recipes
    they stack (each step's recipe alone, where the default plan has it)."""
    planned = hone.list_recipes(model, batch_sizes=batch_sizes)
    labels = [p.recipe.label for p in planned if not p.unavailable]
    stacked = [label for label in wanted if label in labels]
    singles = [label for label in labels if label in {p for s in stacked for p in s.split("+")}]
    return stacked, singles


def section(model: str, batch_sizes: tuple[int, ...], time_budget_s: float | None, wanted: tuple[str, ...]) -> str:
    stacked, singles = stacks_of(model, batch_sizes, wanted)
    started = time.perf_counter()
    result = hone.optimize(model, batch_sizes=batch_sizes, recipes=[*stacked, *singles], store=False,
                           fallback_attempts=0, time_budget_s=time_budget_s, progress=False)
    wall = time.perf_counter() - started
    hw = result.run.hardware
    sets = list(result.run.input_sets)
    eager = {r.input_set: r for r in result.results if r.recipe.baseline}
    by_label: dict[str, dict[str, object]] = {}
    for r in result.results:
        by_label.setdefault(r.recipe.label, {})[r.input_set] = r
    lines = [
        f"### Stacks on `{model}`",
        "",
        f"- machine: {hw.get('cpu_name')}, {result.run.threads} threads; date {datetime.date.today().isoformat()}; "
        f"whole run {wall:.0f} s",
        f"- command: `python benchmarks/stacks.py {model}`",
        "",
        "| recipe | " + " | ".join(f"{s} p50 | {s} speedup" for s in sets) + " | status |",
        "|---|" + "---|---|" * len(sets) + "---|",
    ]
    for label, per_set in by_label.items():
        cells = []
        for s in sets:
            r = per_set.get(s)
            speed = speedup_of(r, eager.get(s)) if r is not None else None
            cells.append(f"{r.measurement.p50 * 1e3:.2f} ms" if r is not None and r.measurement else "-")
            cells.append(f"{speed:.2f}x" if speed else "-")
        first = next(iter(per_set.values()))
        status = "ok" if all(r.ok for r in per_set.values()) else f"{first.status}: {first.reason[:70]}"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {status} |")
    not_run = result.run.pruned
    if not_run:
        lines += ["", "Not run (time budget): " + ", ".join(sorted(not_run))]
    lines += ["", f"best: {result.selection.why_best}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["minilm", "digits-cnn", "hf:resnet-50"])
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--time-budget", type=float, default=1800.0, help="seconds per model (0: none)")
    parser.add_argument("--stacks", default=",".join(STACKS), help="comma-separated stack labels")
    args = parser.parse_args()
    sizes = tuple(int(x) for x in args.batch_sizes.split(","))
    for name in args.models:
        print(section(name, sizes, args.time_budget or None, tuple(args.stacks.split(","))), flush=True)
