"""Run the default `hone optimize` (MiniLM) and print a BENCHMARKS.md section for it.

    python benchmarks/run_default.py [MODEL ...] > section.md

Every figure comes from one sweep on this machine: speedups are ratios to eager fp32 measured in
the same run, never against a stored number from another day.
"""

from __future__ import annotations

import datetime
import platform
import sys
import time

import hone
from hone.search.select import speedup_of


def section(model: str) -> str:
    started = time.perf_counter()
    result = hone.optimize(model, store=False)
    wall = time.perf_counter() - started
    run = result.run
    hw = run.hardware
    lines = [
        f"### `hone optimize {model}`",
        "",
        f"- machine: {hw.get('cpu_name')}, {hw.get('physical_cores')} physical / {hw.get('logical_cores')} logical cores, "
        f"flags {', '.join(f for f in ('avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_tile') if f in hw.get('flags', []))}",
        f"- date: {datetime.date.today().isoformat()}; whole run {wall:.0f} s wall",
        f"- command: `python benchmarks/run_default.py {model}` (same sweep as `hone optimize {model}`)",
        f"- versions: python {platform.python_version()}, "
        + ", ".join(f"{k} {v}" for k, v in run.versions.items() if k not in ("python",)),
        f"- threads: {run.threads} for every candidate",
        "",
        "| inputs | recipe | status | p50 | p90 | throughput/s | speedup vs eager | peak RSS | build + first call | accuracy check |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    eager = {r.input_set: r for r in result.results if r.recipe.label == "eager"}
    for r in sorted(result.results, key=lambda r: (list(run.input_sets).index(r.input_set), r.measurement.p50 if r.measurement else 1e9)):
        m = r.measurement
        speed = speedup_of(r, eager.get(r.input_set))
        metric = r.verdict.metric if r.verdict else None
        check = f"{metric.name} {metric.value:.4f}" if metric else (r.reason[:60] if not r.ok else "tensors match")
        lines.append(
            f"| {r.input_set} | {r.recipe.label} | {r.status.value} | "
            + (f"{m.p50 * 1e3:.2f} ms | {m.p90 * 1e3:.2f} ms | {m.throughput:.1f} | " if m else "- | - | - | ")
            + (f"{speed:.2f}x | " if speed else "- | ")
            + (f"{(m.peak_rss_bytes or 0) / 2**20:.0f} MiB | {m.build_s + m.first_call_s:.1f} s | " if m else "- | - | ")
            + f"{check} |"
        )
    lines += ["", f"best: {result.selection.why_best}", ""]
    if result.selection.why_runner_up:
        lines += [f"runner-up: {result.selection.why_runner_up}", ""]
    lines += ["The console table of the same run:", "", "```", result.table().rstrip(), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    for spec in sys.argv[1:] or ["minilm"]:
        print(section(spec))
