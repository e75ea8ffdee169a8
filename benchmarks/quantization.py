"""Every quantization method hone has, on one model, in one sweep: speedup over eager fp32, the
accuracy it cost, and what building it cost. Prints a BENCHMARKS.md section.

    python benchmarks/quantization.py [MODEL[:LABEL,...] ...] > section.md   (default: digits-cnn minilm)

The sweep is `hone optimize` restricted to eager fp32 and the quantized recipes (fallback
retries included), so the figures are the ones a user's run would show; speedups are ratios to
eager measured in the same run.
"""

from __future__ import annotations

import datetime
import sys
import time

import hone
from hone.registry import PASSES
from hone.search.select import speedup_of

# What each pass records as the time it spent fitting the model (calibration, training, ...).
FIT_TIME_NOTES = ("calibration_s", "train_s", "compress_s", "quant_s")


def quantized_labels(model: str) -> list[str]:
    from hone.hardware import probe
    from hone.passes.quantize import QuantizationPass

    workload, hw = hone.load_model(model), probe(measure_peaks=False)
    labels = []
    for cls in PASSES:
        if issubclass(cls, QuantizationPass):
            labels += [r.label for r in cls.propose(workload, hw, "cpu")]
    return labels


def _fit_time(info: dict) -> str:
    found = [(k, info[k]) for k in FIT_TIME_NOTES if isinstance(info.get(k), (int, float))]
    return ", ".join(f"{k.removesuffix('_s')} {v:.2f} s" for k, v in found) or "-"


def section(model: str, only: list[str] | None = None) -> str:
    command = f"{model}:{','.join(only)}" if only else model
    started = time.perf_counter()
    result = hone.optimize(model, include=["eager", *(only or quantized_labels(model))], store=False)
    wall = time.perf_counter() - started
    run, hw = result.run, result.run.hardware
    sets = list(run.input_sets)
    eager = {r.input_set: r for r in result.results if r.recipe.label == "eager"}
    lines = [
        f"### Quantization on `{model}`",
        "",
        f"- machine: {hw.get('cpu_name')}, {run.threads} threads; date {datetime.date.today().isoformat()}; "
        f"whole sweep {wall:.0f} s wall",
        f"- command: `python benchmarks/quantization.py {command}`",
        f"- metric: {run.eval_metric} on the eval split (eager fp32: {run.reference_scores.get('eval', float('nan')):.4f}); "
        "calibration never uses that split",
        "",
        "| recipe | status | " + " | ".join(f"speedup {s}" for s in sets)
        + " | metric (Δ vs fp32) | also | build (worker) | of which fitting | kept in float |",
        "|---|---|" + "---|" * len(sets) + "---|---|---|---|---|",
    ]
    for label in dict.fromkeys(r.recipe.label for r in result.results):
        rows = {r.input_set: r for r in result.results if r.recipe.label == label}
        first = next(iter(rows.values()))
        worst = next((r for r in rows.values() if not r.ok), first)
        speeds = []
        for s in sets:
            r = rows.get(s)
            speed = speedup_of(r, eager.get(s)) if r is not None and r.ok else None
            speeds.append(f"{speed:.2f}x" if speed else "-")
        metric = next((r.verdict.metric for r in rows.values() if r.verdict and r.verdict.metric), None)
        metric_text = f"{metric.value:.4f} ({metric.delta:+.4f})" if metric else "-"
        also = ", ".join(f"{k} {v:.3f}" for k, v in metric.also.items()) if metric else ""
        build = next((r.measurement.build_s for r in rows.values() if r.measurement), None)
        status = worst.status.value if worst.ok else f"{worst.status.value}: {worst.reason[:130]}"
        lines.append(
            f"| {label} | {status} | " + " | ".join(speeds)
            + f" | {metric_text} | {also or '-'} | {f'{build:.1f} s' if build is not None else '-'} | "
            f"{_fit_time(first.runner_info)} | {len(first.recipe.kept_float) or '-'} |"
        )
    kept = {r.recipe.label: r.recipe.kept_float for r in result.results if r.recipe.kept_float}
    if kept:
        lines += ["", "Layers kept in float by the accuracy fallback (most sensitive first):", ""]
        lines += [f"- {label}: {', '.join(names)}" for label, names in kept.items()]
    lines += ["", f"best: {result.selection.why_best}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    # MODEL[:label,label]: only those recipes (and eager), e.g. minilm:ort-int8-static
    for arg in sys.argv[1:] or ["digits-cnn", "minilm"]:
        spec, _, labels = arg.partition(":")
        print(section(spec, labels.split(",") if labels else None), flush=True)
