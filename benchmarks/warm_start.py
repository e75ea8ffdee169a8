"""Warm start against fresh interpreters: one sweep's wall time with workers forked from the
sweep's warm start (search.zygote, the default) and with a fresh interpreter per candidate,
alternated in one run so both see the same machine. Per model, the same recipes both ways.

    python benchmarks/warm_start.py [--repeats N] [--models tiny,minilm]

tiny: a two-layer MLP and five cheap recipes (the worker's start is most of each candidate);
minilm: the default model with three recipes (transformers' import is part of each start).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import hone  # noqa: E402
from hone.search.executor import SubprocessExecutor  # noqa: E402
from tiny_models import tiny_mlp  # noqa: E402

MODELS = {
    "tiny": (lambda: tiny_mlp(), ["eager", "torchscript-trace", "torchscript-script", "onnxruntime",
                                  "torch-int8-dynamic"]),
    "minilm": (lambda: ("minilm", None), ["eager", "torchscript-trace", "onnxruntime"]),
}


def one_sweep(model_name: str, warm: bool) -> tuple[float, int]:
    make, recipes = MODELS[model_name]
    model, x = make()
    with tempfile.TemporaryDirectory() as tmp, SubprocessExecutor(Path(tmp), warm_start=warm) as executor:
        started = time.perf_counter()
        result = hone.optimize(model, x, recipes=recipes, store=False, progress=False, measure_time_s=0.2,
                               profile_first=False, time_budget_s=None, fallback_attempts=0, executor=executor)
        wall = time.perf_counter() - started
    return wall, len(result.results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", default="tiny,minilm")
    args = parser.parse_args()
    print(f"# warm start: {datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"`python benchmarks/warm_start.py --repeats {args.repeats} --models {args.models}`\n")
    print("| model | candidates | fresh interpreter per candidate | warm start | ratio |")
    print("|---|---|---|---|---|")
    for name in args.models.split(","):
        walls: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeats):
            for warm in (False, True):  # alternated: drift on the machine hits both alike
                wall, count = one_sweep(name, warm)
                walls[warm].append(wall)
        fresh, forked = statistics.median(walls[False]), statistics.median(walls[True])
        print(f"| {name} | {count} | {fresh:.1f} s | {forked:.1f} s | {fresh / forked:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
