"""A stored run's cost: $ / 1M per candidate at this machine's price, the break-even of a device
you own, and the projection of the model onto other hardware, checked against this machine.

The price is the one stored with the run (`hone optimize --instance/--price-per-hour/
--price-table`, or the closest match when the objective was cost); `hone cost` may price it
otherwise, and without either it takes the closest match and says so.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from hone.cost.arithmetic import fmt_usd, usd_per_million
from hone.cost.breakeven import BreakEven, OwnedDevice, break_even
from hone.cost.pricing import Price, Pricing
from hone.errors import HoneError, InputError

if TYPE_CHECKING:
    from hone.cost.projection import Check, Projection
    from hone.search.run import OptimizeResult, RunInfo

NO_RECORD = ("this run kept no per-op FLOPs and bytes (it predates them, was planned without profiling, or its "
             "profiling failed): run `hone optimize` again to project it")


def run_price(run: "RunInfo") -> Price | None:
    """The price stored with the run's constraints, if it had one."""
    return Price.from_dict(((run.settings or {}).get("constraints") or {}).get("price"))


def price_for(run: "RunInfo", pricing: Pricing | None = None) -> tuple[Price | None, str]:
    """(price, why none) for a stored run: `pricing` when given, else the stored one, else the
    closest match to the run's machine (assumed, said)."""
    if pricing is not None:
        return pricing.resolve(run.hardware or {}, run.device), ""
    stored = run_price(run)
    if stored is not None:
        return stored, ""
    try:
        return Pricing().resolve(run.hardware or {}, run.device), ""
    except InputError as exc:
        return None, str(exc)


@dataclasses.dataclass(frozen=True)
class CandidateCost:
    label: str
    input_set: str
    batch: int
    p50_s: float
    throughput_per_s: float
    usd_per_million: float | None
    best_set: bool  # the input set where this recipe costs least (its most samples a second)
    winner: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in dataclasses.asdict(self).items()}


def candidate_costs(result: "OptimizeResult", price: Price | None) -> list[CandidateCost]:
    """Every passing, measured candidate at every input set, cheapest first within each set."""
    best_key = result.selection.best.key if result.selection.best else None
    timed = [(r, r.measurement) for r in result.results if r.ok and r.measurement is not None and r.measurement.n]
    best_rate: dict[str, float] = {}
    for r, m in timed:
        best_rate[r.recipe.key] = max(best_rate.get(r.recipe.key, 0.0), m.throughput)
    out = [CandidateCost(r.recipe.label, r.input_set, m.batch_size, m.p50, m.throughput,
                         usd_per_million(m.throughput, price.usd_per_hour) if price is not None else None,
                         m.throughput == best_rate[r.recipe.key], r.recipe.key == best_key)
           for r, m in timed]
    order = {label: i for i, label in enumerate(result.run.input_sets)}
    return sorted(out, key=lambda c: (order.get(c.input_set, len(order)), -c.throughput_per_s))


@dataclasses.dataclass
class CostReport:
    run_id: int | None
    model: str
    price: Price | None
    candidates: list[CandidateCost]
    projections: list["Projection"] = dataclasses.field(default_factory=list)
    checks: list["Check"] = dataclasses.field(default_factory=list)
    fit_note: str = ""
    break_even: BreakEven | None = None
    against: str = ""  # what the break-even compares with
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from hone.cost.projection import LABEL

        return {
            "run_id": self.run_id, "model": self.model,
            "price": self.price.to_dict() if self.price else None,
            "priced_as": self.price.describe() if self.price else None,
            "candidates": [c.to_dict() for c in self.candidates],
            "break_even": ({**self.break_even.to_dict(), "against": self.against} if self.break_even else None),
            "projection": {"what": LABEL, "fit": self.fit_note, "targets": [p.to_dict() for p in self.projections],
                           "this_machine_check": [c.to_dict() for c in self.checks]},
            "notes": self.notes,
        }  # fmt: skip


def cost_report(result: "OptimizeResult", *, pricing: Pricing | None = None, device: OwnedDevice | None = None,
                against: str | None = None, precision: str | None = None, targets: str | None = None) -> CostReport:
    """The whole cost picture of a stored run (see the module docstring)."""
    run = result.run
    price, why_none = price_for(run, pricing)
    report = CostReport(run.run_id, run.model, price, candidate_costs(result, price))
    if why_none:
        report.notes.append(f"no price: {why_none}")
    _project(report, result, pricing, precision, targets)
    if device is not None:
        _break_even(report, device, against)
    return report


def _project(report: CostReport, result: "OptimizeResult", pricing: Pricing | None, precision: str | None,
             targets_path: str | None) -> None:
    from hone.cost.projection import check, fit, project
    from hone.cost.targets import load_targets, this_machine

    records = (result.run.profile or {}).get("sets") or []
    if not records:
        report.notes.append(NO_RECORD)
        return
    found = fit(records)
    report.fit_note = found.note
    table = (pricing or Pricing()).load()
    machine = this_machine(result.run.hardware or {}, report.price)
    targets = load_targets(table, targets_path) + ([machine] if machine is not None else [])
    report.projections = [project(found, t, precision) for t in targets]
    if machine is None:
        report.notes.append("no measured peaks in this run's hardware record: this machine is not projected, "
                            "so the projection cannot be checked here (`hone doctor` measures them)")
        return
    if result.run.device != "cpu":
        report.notes.append(f"the run measured {result.run.device}; this machine's projection uses its CPU peaks")
    peak_threads = ((result.run.hardware or {}).get("peaks") or {}).get("threads")
    if peak_threads and peak_threads != result.run.threads:
        report.notes.append(f"this machine's peaks were measured at {peak_threads} threads and the run used "
                            f"{result.run.threads}: the check compares the two")
    winner = result.selection.best
    measured = [(r.recipe.label, r.input_set, r.measurement.batch_size, r.measurement.p50) for r in result.results
                if r.ok and r.measurement is not None and r.measurement.n
                and (r.recipe.baseline or (winner is not None and r.recipe.key == winner.key))]
    report.checks = check(found, machine, measured)


def _break_even(report: CostReport, device: OwnedDevice, against: str | None) -> None:
    """The device runs the winner at its best measured rate here; the cloud costs either this
    machine's price for the same rate, or a projected target's best-batch $ / 1M."""
    mine = [c for c in report.candidates if c.winner and c.best_set]
    if not mine:
        raise HoneError("no passing candidate to compute a break-even from")
    rate = mine[0].throughput_per_s
    if against is None:
        if report.price is None:
            raise InputError("no cloud price to compare the device with", hint="--instance, --price-per-hour or --against")
        cloud = usd_per_million(rate, report.price.usd_per_hour)
        report.against = (f"a cloud machine like this one at the same rate ({report.price.describe()}): "
                          f"{fmt_usd(cloud)} / 1M")
    else:
        found = next((p for p in report.projections if p.target.name == against), None)
        if found is None:
            names = ", ".join(p.target.name for p in report.projections) or "none: " + NO_RECORD
            raise InputError(f"no projected target {against!r}", hint=f"targets: {names}")
        if found.best is None or found.best.usd_per_million is None:
            raise InputError(f"the projection for {against} has no $ / 1M ({'; '.join(found.notes) or 'no price'})")
        cloud = found.best.usd_per_million
        report.against = (f"{against} at its projected best batch {found.best.batch}: {fmt_usd(cloud)} / 1M, a lower "
                          "bound on its cost (a projection), so this break-even comes no later than said")
    report.break_even = break_even(device, rate, cloud)
