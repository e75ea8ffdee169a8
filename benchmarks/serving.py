"""What does serving change? The default `hone optimize` of a model, then the serving sweep of
its top candidates behind a real server (batching x processes x threads x the runtimes' own
knobs, closed-loop and Poisson load over loopback), against what one call at a time gave.

    python benchmarks/serving.py [--max-p99-ms MODEL=MS ...] [--serve-time S] [MODEL ...]
        (default: minilm and hf:resnet-50, p99 targets 100 ms and 1000 ms)

Prints a BENCHMARKS.md section: per model, every configuration's capacity and its best point
within the target, the chosen configuration, and the single-request figure it is compared with
(batch / p50 from the same run's sweep). The curves themselves are in each run's HTML report
(printed: hone-runs style store under a temporary directory, kept).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import tempfile
import time
from pathlib import Path

import hone
from hone.hardware import probe
from hone.report.serving import serving_rows
from hone.serve.sweep import ServeSweep, ServeSweepSettings

TARGETS_MS = {"minilm": 100.0, "hf:resnet-50": 1000.0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", default=list(TARGETS_MS))
    parser.add_argument("--max-p99-ms", action="append", default=[], help="MODEL=MS")
    parser.add_argument("--serve-time", type=float, default=420.0)
    parser.add_argument("--time-budget", type=float, default=180.0)
    parser.add_argument("--stores", type=Path, default=None)
    args = parser.parse_args()
    targets = dict(TARGETS_MS)
    for item in args.max_p99_ms:
        name, _, ms = item.rpartition("=")
        targets[name] = float(ms)
    stores = args.stores or Path(tempfile.mkdtemp(prefix="hone-serving-bench-"))
    hw = probe()
    print(f"### Serving sweep ({datetime.date.today()}, {hw.cpu_name}, {hw.default_threads} threads, "
          f"Python {platform.python_version()})\n")
    print(f"`python benchmarks/serving.py {' '.join(args.models)} --serve-time {args.serve_time:g}` "
          f"(stores in {stores})\n")
    for model in args.models:
        target = targets.get(model)
        started = time.perf_counter()
        # One folder per model: a store keeps its runs' artifacts beside it, by run number.
        result = hone.optimize(model, store=stores / model.replace(":", "-") / "hone.db", progress=False,
                               time_budget_s=args.time_budget,
                               serve_sweep=ServeSweepSettings(max_p99_ms=target, time_budget_s=args.serve_time))
        wall = time.perf_counter() - started
        sweep = ServeSweep.from_dict(result.run.serving)
        print(f"#### {model} (p99 target {target:g} ms; whole run {wall:.0f} s, serving sweep {sweep.wall_s:.0f} s)\n")
        print("| candidate | configuration | capacity | best within target | p99 | note |")
        print("|---|---|---|---|---|---|")
        for row in serving_rows(sweep):
            print("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")
        print()
        for label, single in sorted(sweep.single_request.items()):
            print(f"- one call at a time, {label}: {single['throughput_per_s']:.4g}/s "
                  f"({single['input_set']}, p50 {single['p50_s'] * 1e3:.3g} ms)")
        for skip in sweep.skipped:
            print(f"- not run: {skip['candidate']} ({skip['config']}): {skip['why']}")
        print(f"- {'best effort' if sweep.best_effort else 'chosen'}: {sweep.why}")
        print(f"- the sweep's winner by latency: {result.selection.why_best}\n")


if __name__ == "__main__":
    main()
