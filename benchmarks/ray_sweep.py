"""Sweeps on a Ray cluster against the local executor: the benchmark set swept both ways in one
script run, wall time and winners side by side.

    python benchmarks/ray_sweep.py [--quick] [--only LABEL,...] [--ray-address ADDR] [--time-budget S] [--stores DIR] [MODEL ...]
        (default: minilm digits-cnn; --quick: digits-cnn, three recipes, a short check)

First every model with the local executor, one after another (as `hone optimize a b` runs them),
then all of them with `--executor ray` (a local Ray started for the run, or the cluster at
--ray-address), side by side (one driver thread per model). Each executor gets fresh stores, so
neither reads the other's history. By default both runs are exhaustive (`--time-budget 0`): the
same plan runs under both, so their statuses and winners can be compared; under a time budget,
models side by side on one node share its timing slot, and each gets only part of the worker
time it would get alone.

Targets checked: the same status for every (recipe, input set) under both executors, and the
same winner per model (or each winner within the other's interval, as that run measured both:
MiniLM's top candidates sit within the noise of these machines). Wall times are reported, not
targeted: on one node the Ray run cannot be faster (timed work takes the node's slot in turn)
and pays for starting Ray and shipping artifacts; on several nodes it can.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import tempfile
import time
from pathlib import Path

from hone.search.many import optimize_many

DEFAULT_MODELS = ["minilm", "digits-cnn"]
QUICK_MODELS = ["digits-cnn"]
QUICK_OPTIONS = dict(include=["onnxruntime", "torchscript-trace"], profile_first=False, measure_time_s=1.0,
                     fallback_attempts=0)


def sweep_all(models: list[str], executor: str, store_dir: Path, ray_address: str | None, options: dict):
    started = time.perf_counter()
    runs = optimize_many(models, executor=executor, ray_address=ray_address, store=store_dir / "hone.db",
                         progress=False, **options)
    return runs, time.perf_counter() - started


def _ranked(result, key: str):
    return next((r for r in result.selection.ranking if r.recipe.key == key), None)


def _winner(run) -> str:
    if run.error is not None:
        return f"error: {run.error}"
    best = run.result.selection.best
    ranked = _ranked(run.result, best.key) if best else None
    if ranked is None:
        return "none"
    return f"{best.label} {ranked.speedup:.2f}x ({ranked.low:.2f}-{ranked.high:.2f})"


def _statuses(run) -> dict[tuple[str, str], str]:
    return {} if run.error else {(r.recipe.label, r.input_set): r.status.value for r in run.result.results}


def _same_or_within(a, b) -> bool:
    """The same winner, or each winner within the other's interval as the other run measured it."""
    if a.error or b.error or not a.result.selection.best or not b.result.selection.best:
        return False
    wa, wb = a.result.selection.best, b.result.selection.best
    if wa.key == wb.key:
        return True
    a_top, a_other = _ranked(a.result, wa.key), _ranked(a.result, wb.key)
    b_top, b_other = _ranked(b.result, wb.key), _ranked(b.result, wa.key)
    return bool(a_other and b_other and a_other.high >= a_top.low and b_other.high >= b_top.low)


def section(models: list[str], local, ray, t_local: float, t_ray: float, command: str) -> list[str]:
    from hone.hardware import probe

    hw = probe(measure_peaks=False)
    lines = [
        f"### Sweeps on a local Ray cluster against the local executor ({hw.cpu_name}, "
        f"{datetime.date.today().isoformat()})",
        "",
        f"- machine: {hw.cpu_name}, {hw.physical_cores} physical cores; python {platform.python_version()}",
        f"- command: `{command}`",
        f"- whole sweep of {len(models)} model(s): local executor {t_local:.0f} s (one after another), "
        f"Ray {t_ray:.0f} s (side by side; {t_ray / t_local:.2f}x the local wall)",
        "",
        "| model | executor | wall | winner | speedup (interval) | candidates |",
        "|---|---|---|---|---|---|",
    ]
    checks = []
    for a, b in zip(local, ray):
        for name, run in (("local", a), ("ray", b)):
            winner = _winner(run)
            label, _, figure = winner.partition(" ")
            count = len({r.recipe.key for r in run.result.results}) if run.error is None else 0
            lines.append(f"| {run.model} | {name} | {run.wall_s:.0f} s | {label} | {figure} | {count} recipes |")
        sa, sb = _statuses(a), _statuses(b)
        differ = [f"{label}@{where} {sa.get((label, where))}/{sb.get((label, where))}"
                  for label, where in sorted(sa.keys() | sb.keys()) if sa.get((label, where)) != sb.get((label, where))]
        checks.append((f"{a.model}: the same status for every candidate" + (f" (differ: {', '.join(differ)})" if differ else ""),
                       not differ and bool(sa)))
        checks.append((f"{a.model}: the same winner, or within each other's interval", _same_or_within(a, b)))
    lines += ["", *[f"- {'PASS' if ok else 'MISS'}: {what}" for what, ok in checks], ""]
    return lines


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--quick", action="store_true", help="digits-cnn, three recipes: a short correctness check")
    parser.add_argument("--ray-address", default=None, help="a running cluster (default: a local Ray for the run)")
    parser.add_argument("--time-budget", type=float, default=0.0, help="seconds per model (default 0: exhaustive)")
    parser.add_argument("--stores", type=Path, default=None, help="keep the stores here (default: a new temp folder)")
    parser.add_argument("--only", action="append", default=[],
                        help="run only these labels of each model's default plan (repeatable; eager always runs): "
                        "the same, shorter plan under both executors")
    args = parser.parse_args(argv)

    models = args.models or (QUICK_MODELS if args.quick else DEFAULT_MODELS)
    options = dict(QUICK_OPTIONS) if args.quick else {}
    if args.only:
        options["include"] = [label for value in args.only for label in value.split(",") if label]
    options["time_budget_s"] = args.time_budget or None
    stores = args.stores or Path(tempfile.mkdtemp(prefix="hone-ray-bench-"))
    print(f"- stores kept in {stores}", file=sys.stderr)
    for name in ("local", "ray"):
        (stores / name).mkdir(parents=True, exist_ok=True)

    local, t_local = sweep_all(models, "local", stores / "local", None, options)
    ray, t_ray = sweep_all(models, "ray", stores / "ray", args.ray_address, options)
    command = "python benchmarks/ray_sweep.py " + " ".join(argv)
    print("\n".join(section(models, local, ray, t_local, t_ray, command.strip())), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
