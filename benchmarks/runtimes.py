"""Every compiler runtime hone has, on one model, in one sweep: p50, speedup over eager fp32,
and what building it cost (compile, export, tuning). Prints a BENCHMARKS.md section.

    python benchmarks/runtimes.py [MODEL[:LABEL,...] ...] [--batch-sizes 1,8] > section.md
    (default models: minilm hf:resnet-50 hf:vit)

The sweep is `hone optimize` restricted to eager fp32 and the recipes the runtimes propose
(quantized recipes are benchmarks/quantization.py's), with no time budget, so expensive ones
(max-autotune, TVM tuning) run too. Speedups are ratios to eager measured in the same run.
"""

from __future__ import annotations

import datetime
import sys
import time

import hone
from hone.registry import RUNTIMES
from hone.search.select import speedup_of

# What the runtimes record as the one-time work they did, beyond the whole build.
ONE_TIME_NOTES = ("compile_s", "export_s", "tuning_s", "trace_s", "engine_build_s")


def runtime_labels(model: str, batch_sizes: tuple[int, ...] | None) -> list[str]:
    from hone.hardware import probe

    workload, hw = hone.load_model(model, batch_sizes=batch_sizes), probe(measure_peaks=False)
    return [r.label for cls in RUNTIMES for r in cls.propose(workload, hw, "cpu") if r.label != "eager"]


def _one_time(info: dict) -> str:
    found = [(k, info[k]) for k in ONE_TIME_NOTES if isinstance(info.get(k), (int, float))]
    return ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in found) or "-"


def _what_ran(info: dict) -> str:
    notes = []
    if "graph_break_count" in info:
        notes.append(f"graph breaks {info['graph_break_count']}")
    for key in ("inference_precision", "providers", "target", "trace_generalizes", "weights_frozen"):
        if key in info:
            notes.append(f"{key} {info[key]}")
    return "; ".join(notes) or "-"


def section(model: str, only: list[str] | None, batch_sizes: tuple[int, ...] | None) -> str:
    labels = only or runtime_labels(model, batch_sizes)
    command = f"{model}:{','.join(only)}" if only else model
    sizes = f" --batch-sizes {','.join(map(str, batch_sizes))}" if batch_sizes else ""
    started = time.perf_counter()
    result = hone.optimize(model, include=["eager", *labels], batch_sizes=batch_sizes, store=False,
                           time_budget_s=None, fallback_attempts=0)
    wall = time.perf_counter() - started
    run, hw = result.run, result.run.hardware
    sets = list(run.input_sets)
    eager = {r.input_set: r for r in result.results if r.recipe.label == "eager"}
    lines = [
        f"### Runtimes on `{model}`",
        "",
        f"- machine: {hw.get('cpu_name')}, {run.threads} threads; date {datetime.date.today().isoformat()}; "
        f"whole sweep {wall:.0f} s wall",
        f"- command: `python benchmarks/runtimes.py {command}{sizes}`",
        "- inputs: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in run.input_sets.items()),
        "",
        "| recipe | status | " + " | ".join(f"p50 {s} | speedup {s}" for s in sets)
        + " | build (worker) | of which | what ran |",
        "|---|---|" + "---|---|" * len(sets) + "---|---|---|",
    ]
    for label in dict.fromkeys(r.recipe.label for r in result.results):
        rows = {r.input_set: r for r in result.results if r.recipe.label == label}
        first = next(iter(rows.values()))
        worst = next((r for r in rows.values() if not r.ok), first)
        cells = []
        for s in sets:
            r = rows.get(s)
            ok = r is not None and r.ok and r.measurement
            speed = speedup_of(r, eager.get(s)) if ok else None
            cells.append(f"{r.measurement.p50 * 1e3:.2f} ms" if ok else "-")
            cells.append(f"{speed:.2f}x" if speed else "-")
        build = next((r.measurement.build_s for r in rows.values() if r.measurement), None)
        status = worst.status.value if worst.ok else f"{worst.status.value}: {worst.reason[:160]}"
        lines.append(
            f"| {label} | {status} | " + " | ".join(cells)
            + f" | {f'{build:.1f} s' if build is not None else '-'} | {_one_time(first.runner_info)} | "
            f"{_what_ran(first.runner_info)} |"
        )
    lines += ["", f"best: {result.selection.why_best}", ""]
    return "\n".join(lines)


def _batch_sizes(argv: list[str]) -> tuple[tuple[int, ...] | None, list[str]]:
    if "--batch-sizes" not in argv:
        return None, argv
    i = argv.index("--batch-sizes")
    return tuple(int(x) for x in argv[i + 1].split(",")), argv[:i] + argv[i + 2:]


if __name__ == "__main__":
    sizes, args = _batch_sizes(sys.argv[1:])
    # MODEL[:label,label]: only those recipes (and eager), e.g. hf:vit:aoti,tvm
    for arg in args or ["minilm", "hf:resnet-50", "hf:vit"]:
        spec, labels = (arg.rsplit(":", 1) if arg.count(":") > (1 if arg.startswith("hf:") else 0) else (arg, ""))
        print(section(spec, labels.split(",") if labels else None, sizes), flush=True)
