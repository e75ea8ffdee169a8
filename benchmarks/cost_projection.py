"""Which hardware, projected: for MiniLM, digits-cnn and hf:resnet-50, the roofline projection
(hone.cost.projection: a lower bound from published peaks, not a measurement) per target at
batch 1 and at the best batch, with $ / 1M, and this machine's measured / projected ratio.
Prints a BENCHMARKS.md section.

    python benchmarks/cost_projection.py > section.md
    python benchmarks/cost_projection.py --db hone-runs/hone.db   # also the stored winners' ratios

Each model is profiled here, eager fp32, at its default input sets (the smallest and largest
batch, as `hone optimize` does); eager's measured p50 is the profile's unprofiled forward time.
With --db, a model's latest finished run in that store is used instead (its stored per-op
record, and the ratio for its winner too). The price of this machine is the closest match in
the shipped table unless --instance / --price-per-hour say otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import sys

import torch

import hone
from hone.cost.arithmetic import fmt_usd
from hone.cost.pricing import Pricing, pricing_from_options
from hone.cost.projection import LABEL, Projection, check, fit, project, set_record
from hone.cost.targets import load_targets, this_machine
from hone.report.console import fmt_time

MODELS = ("minilm", "digits-cnn", "hf:resnet-50")
PRECISIONS = {"as profiled (float32 ops at the float32 rate)": None,
              "bf16 (float32 ops at the bf16 rate, half their bytes)": "bfloat16"}


def _rate(per_s: float) -> str:
    return f"{per_s:,.0f}/s" if per_s >= 100 else f"{per_s:.3g}/s"


def _priced(p: Projection) -> str:
    t = p.target
    if t.usd_per_hour is None:
        return "no price"
    return f"{t.instance or 'your price'} ${t.usd_per_hour:.4g}/h" + (" per GPU" if t.kind == "gpu" else "")


def projection_table(projections: list[Projection]) -> list[str]:
    lines = ["| target | priced as | bs1 latency | bs1 /s | bs1 $/1M | bs1 bound | best batch | latency | /s | $/1M | bound |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in projections:
        cells = [p.target.name, _priced(p)]
        for point in (p.batch1, p.best):
            if point is None:
                cells += ["does not fit"] + ["-"] * (3 if point is p.batch1 else 4)
                continue
            if point is p.best:
                cells.append(str(point.batch))
            cells += [fmt_time(point.latency_s), _rate(point.throughput), fmt_usd(point.usd_per_million), point.binding]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"{p.target.name}: {n}" for p in projections for n in p.notes]
    return lines + ([""] + [f"- {n}" for n in notes] if notes else [])


def _profiled(spec: str, hw, threads: int):
    """(per-set records, [(label, set, batch, measured p50)]) from profiling eager here."""
    from hone.profiler.profile import profile_workload

    workload = hone.load_model(spec)
    by_batch = sorted(workload.input_sets, key=lambda s: s.batch_size)
    sets = by_batch[:1] + (by_batch[-1:] if by_batch[-1].batch_size != by_batch[0].batch_size else [])
    records, measured = [], []
    for s in sets:
        found = profile_workload(workload, hw, input_set=s.label, threads=threads, scaling_max_batch=0)
        records.append(set_record(found, s.batch_size))
        measured.append(("eager", s.label, s.batch_size, found.wall_s))
    return records, measured


def _stored(spec: str, db: str):
    """The latest finished run of `spec` in the store: (records, measured eager + winner), or None."""
    from hone.store import Store

    with Store(db) as store:
        for run in store.list_runs(limit=200):
            if run["model"] == spec and run["status"] == "finished":
                result = store.load_run(run["id"], resolve=False)
                records = (result.run.profile or {}).get("sets")
                if not records:
                    continue
                best = result.selection.best
                measured = [(r.recipe.label, r.input_set, r.measurement.batch_size, r.measurement.p50)
                            for r in result.results if r.ok and r.measurement is not None and r.measurement.n
                            and (r.recipe.baseline or (best is not None and r.recipe.key == best.key))]
                return records, measured, run["id"]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--db", help="use each model's latest finished run in this store where there is one")
    parser.add_argument("--instance", help="price this machine as this price-table row")
    parser.add_argument("--price-per-hour", type=float, help="this machine's price, $ per hour")
    args = parser.parse_args()

    hw = hone.probe_hardware()
    if hw.peaks is None:
        sys.exit("no measured peaks: run `hone doctor` first")
    pricing = pricing_from_options(None, args.price_per_hour, args.instance) or Pricing()
    price = pricing.resolve(hw.to_dict(), "cpu")
    machine = this_machine(hw.to_dict(), price)
    targets = load_targets(pricing.load()) + [machine]
    peaks = hw.peaks
    out = [
        f"### Cost and projection on {hw.cpu_name} ({datetime.date.today().isoformat()})",
        "",
        f"- command: `python benchmarks/cost_projection.py{' --db ' + args.db if args.db else ''}`; torch {torch.__version__}, "
        f"{hw.default_threads} threads",
        f"- this machine's measured peaks (`hone doctor`): fp32 {peaks.fp32_gflops:.1f} GFLOP/s"
        + (f", bf16 {peaks.bf16_gflops:.1f} GFLOP/s" if peaks.bf16_gflops else ", no bf16 units")
        + (f", int8 {peaks.int8_gops:.1f} GOP/s" if peaks.int8_gops else "")
        + f", bandwidth {peaks.bandwidth_gbs:.1f} GB/s ({peaks.threads} threads)",
        f"- this machine {price.describe()}",
        f"- every projected figure is a {LABEL}: published peaks (src/hone/cost/targets.json, with sources and "
        "dates), per-op overhead floors that are assumptions, prices from src/hone/cost/prices.json (list prices, "
        "check before relying on them)",
        "- the projection is checked against this machine only: no GPU was measured for these figures",
        "",
    ]
    for spec in args.models:
        stored = _stored(spec, args.db) if args.db else None
        if stored is not None:
            records, measured, run_id = stored
            source = f"run {run_id} in {args.db}"
        else:
            records, measured = _profiled(spec, hw, hw.default_threads)
            source = "profiled now, eager fp32"
        found = fit(records)
        out += [f"#### {spec} ({source}; batch {', '.join(str(r['batch_size']) for r in records)})", "", found.note, ""]
        for title, precision in PRECISIONS.items():
            out += [f"{title}:", ""] + projection_table([project(found, t, precision) for t in targets]) + [""]
        out += ["this machine, measured / projected:", "",
                "| recipe | inputs | measured p50 | projected | measured / projected |", "|---|---|---|---|---|"]
        for c in check(found, machine, measured):
            out.append(f"| {c.label} | {c.input_set} | {fmt_time(c.measured_s)} | {fmt_time(c.projected_s)} | "
                       f"{c.ratio:.2f}x |")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
