"""ONNX Runtime's transformer fusions (ort-fusions) against plain hone ONNX Runtime, in fp32 and
under dynamic int8, on one model in one script run. Prints a BENCHMARKS.md section.

    python benchmarks/attention_ort.py [MODEL]      (default: minilm, at batch 1 and 8)

At the model's own input sets. Each recipe is built by hone's build path (search.build.build_recipe, as in a worker) in a
fresh interpreter of its own and timed there against a fresh eager copy of the model in
alternating windows (hone.bench.paired: 6 ABBA pairs), as benchmarks/peers.py times hone's
per-runtime recipes: every speedup is a ratio to eager taken seconds apart, with its 95 %
interval. "fused / unfused" divides a fused recipe's speedup by its unfused counterpart's.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import _run_child  # noqa: E402  (one fresh interpreter per recipe, paired with eager)

# (fused recipe, the recipe it is measured against)
PAIRS = (("ort-fusions", "onnxruntime"), ("ort-fusions+ort-int8-dynamic", "ort-int8-dynamic"))


def _cpu() -> str:
    """This machine as hone's probe reads it, with the units that decide int8 and bf16 speed."""
    from hone.hardware import probe

    hw = probe(measure_peaks=False)
    units = sorted(f for f in hw.flags if f in ("avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8"))
    return f"{hw.cpu_name} ({', '.join(units) or 'no VNNI or bf16 units'})"


def section(spec: str) -> str:
    import torch

    from hone.bench.paired import PairedSpeedup, combined

    labels = ["eager fp32", *(label for pair in PAIRS for label in pair)]
    started = time.perf_counter()
    rows = {label: _run_child(spec, label, {}) for label in labels}
    wall = time.perf_counter() - started
    sets = next((list(r["sets"]) for r in rows.values() if r["sets"]), [])
    speedups: dict[str, dict[str, float]] = {}
    lines = [
        f"### ONNX Runtime transformer fusions on `{spec}`",
        "",
        f"- machine: {_cpu()}, {torch.get_num_threads()} threads; date {datetime.date.today().isoformat()}; "
        f"whole run {wall:.0f} s",
        f"- command: `python benchmarks/attention_ort.py {spec}`",
        "",
        "| recipe | " + " | ".join(f"p50 {s} | speedup {s} (95 %)" for s in sets) + " | score |",
        "|---|" + "---|---|" * len(sets) + "---|",
    ]
    for label, row in rows.items():
        if len(row["sets"]) < len(sets) or not sets:
            lines.append(f"| {label} | " + " | ".join("-" for _ in sets for _ in "ab") + f" | not timed: {row.get('error', '')} |")
            continue
        cells = []
        for s in sets:
            pair = PairedSpeedup.from_dict(row["sets"][s])
            speed, low, high = combined([pair])
            speedups.setdefault(label, {})[s] = speed
            p50 = sorted(pair.candidate_p50_s)[len(pair.candidate_p50_s) // 2]
            cells += [f"{p50 * 1e3:.2f} ms", f"{speed:.2f}x ({low:.2f}-{high:.2f})"]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {row.get('quality', '')} |")
    lines += ["", "| fused / unfused | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    for fused, plain in PAIRS:
        if fused in speedups and plain in speedups:
            lines.append(f"| {fused} / {plain} | " + " | ".join(f"{speedups[fused][s] / speedups[plain][s]:.2f}" for s in sets) + " |")
    return "\n".join(lines + [""])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="minilm")
    args = parser.parse_args()
    print(section(args.model), flush=True)
