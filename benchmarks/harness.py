"""Does hone's harness slow down what it measures? Eager fp32 and Inductor (weights frozen) on one
model, timed by hone's workers and by a plain loop in this script (Inductor built here by hone's
own runtime, so only the timing differs), in one run: the plain loops run before and after the
sweep, so drift shows as their difference.

    python benchmarks/harness.py [minilm] [--batch-size 1] [--seconds 8]

Prints a BENCHMARKS.md section. The plain loop: the same thread count as hone's workers,
torch.inference_mode, perf_counter around each call, median of the calls after a warm-up.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

import torch

import hone
from hone.hardware import probe
from hone.models.workload import FlatIO, normalize_outputs


def plain_p50(fn, seconds: float) -> float:
    with torch.inference_mode():
        warm_until = time.perf_counter() + min(2.0, seconds / 4)
        while time.perf_counter() < warm_until:
            fn()
        times = []
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def compiled(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str], outputs: list[str], threads: int):
    """Built by hone's own Inductor runtime, in this process: the comparison is of the timing,
    not of two ways to compile."""
    import tempfile
    from pathlib import Path

    from hone.plugin import BuildContext
    from hone.runtimes.inductor import Inductor
    from hone.search.build import build_recipe

    recipe = Inductor.propose(None, None, "cpu")[0]
    ctx = BuildContext(inputs, names, outputs, Path(tempfile.mkdtemp(prefix="hone-bench-")), threads)
    runner, _, _ = build_recipe(recipe, module, ctx)
    return lambda: runner.module(*inputs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", nargs="?", default="minilm")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()

    threads = probe(measure_peaks=False).default_threads
    torch.set_num_threads(threads)
    workload = hone.load_model(args.model, batch_sizes=(args.batch_size,))
    inputs = workload.input_sets[0].as_args()
    with torch.inference_mode():
        names = list(normalize_outputs(workload.module(**workload.input_sets[0].tensors)))
    flat = FlatIO(workload.module, workload.input_names, names).eval()
    loops = {"eager": lambda: flat(*inputs), "inductor": compiled(flat, inputs, workload.input_names, names, threads)}

    started = time.perf_counter()
    before = {k: plain_p50(fn, args.seconds) for k, fn in loops.items()}
    result = hone.optimize(workload, recipes=["inductor"], store=False, fallback_attempts=0, progress=False,
                           threads=threads, measure_time_s=args.seconds)
    after = {k: plain_p50(fn, args.seconds) for k, fn in loops.items()}
    wall = time.perf_counter() - started
    by_label = {r.recipe.label: r for r in result.results}

    print(f"### Harness overhead on `{args.model}` at batch {args.batch_size}\n")
    print(f"- machine: {result.run.hardware.get('cpu_name')}, {threads} threads; date "
          f"{datetime.date.today().isoformat()}; whole run {wall:.0f} s")
    print(f"- command: `python benchmarks/harness.py {args.model} --batch-size {args.batch_size} --seconds {args.seconds:g}`\n")
    print("| recipe | plain loop before | hone's worker | plain loop after | hone / mean of plain |")
    print("|---|---|---|---|---|")
    for label in loops:
        r = by_label.get(label)
        hone_p50 = r.measurement.p50 if r is not None and r.ok and r.measurement else None
        plain = (before[label] + after[label]) / 2
        cell = f"{hone_p50 * 1e3:.2f} ms" if hone_p50 else f"{r.status.value if r else 'missing'}"
        ratio = f"{hone_p50 / plain:.3f}" if hone_p50 else "-"
        print(f"| {label} | {before[label] * 1e3:.2f} ms | {cell} | {after[label] * 1e3:.2f} ms | {ratio} |")


if __name__ == "__main__":
    main()
