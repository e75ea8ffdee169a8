"""Pick the winner: the fastest recipe that is `ok` on every input set.

Speed is the geometric mean over input sets of the speedup over eager. A candidate measured in
full was also timed against eager in alternating windows in its own worker (bench.paired): that
paired ratio is its speedup, with a 95 % interval, and drift over the run cancels in it. A
candidate without one (screened out, or resumed from an older run) is compared with eager's p50
from the start of the sweep, its interval the pair's spread (IQR / median). A recipe that failed
anywhere cannot win; a gain is called beyond noise only when the intervals separate.

A repeat run names the previous winner (`incumbent`: {"key", "run"}). It stays the winner
unless another candidate beats it beyond noise (the challenger's interval lies above the
incumbent's): a lead within noise is a coin toss, and two runs of the same model on the same
machine should not hand back different answers on one.

Constraints (search.constraints) change what "best" means: the objective orders the candidates
(latency, throughput or memory), and limits on p99 and peak memory set aside those that exceed
them; when none is left, the closest is the best effort, named as such with what it misses.
The Pareto front over latency, accuracy and memory is part of every selection.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Any

from hone.bench.paired import combined
from hone.search import constraints as limits
from hone.search.constraints import Constraints, Miss
from hone.search.pareto import Point, front
from hone.search.recipe import Recipe
from hone.search.result import CandidateResult


@dataclasses.dataclass(frozen=True)
class Ranked:
    recipe: Recipe
    speedup: float  # geometric mean over input sets, vs eager fp32
    speedups: dict[str, float]  # per input set
    low: float = 0.0  # the speedup's interval (95 % when paired at every set)
    high: float = math.inf
    paired: bool = False  # from paired timing at every set (else against eager at the start)
    screened: bool = False  # screening stopped it at some set: never a contender (ranked after)


@dataclasses.dataclass(frozen=True)
class Selection:
    best: Recipe | None
    ranking: tuple[Ranked, ...]  # ok recipes, fastest first
    why_best: str
    why_runner_up: str
    losers: dict[str, str]  # recipe label -> why it cannot be selected
    drift: str = ""  # how eager's own time moved over the run (paired re-measurements)
    constraints: Constraints = Constraints()
    # recipe label -> what it misses ("p99 12.3 ms at bs8 > 10 ms (+23 %)"); the best effort too
    constraint_misses: dict[str, str] = dataclasses.field(default_factory=dict)
    best_effort: bool = False  # no candidate met every limit: `best` is the closest one
    # The non-dominated candidates over latency, accuracy and memory (search.pareto), fastest
    # first: {"label", "p50_s" (geometric mean over sets), "error" (worst set), "peak_bytes"}.
    front: tuple[dict, ...] = ()

    def to_dict(self) -> dict:
        return {
            "best": self.best.to_dict() if self.best else None,
            "ranking": [
                {"label": r.recipe.label, "speedup": r.speedup, "speedups": r.speedups, "low": r.low,
                 "high": r.high, "paired": r.paired, "screened": r.screened} for r in self.ranking
            ],
            "drift": self.drift,
            "why_best": self.why_best,
            "why_runner_up": self.why_runner_up,
            "losers": self.losers,
            "constraints": self.constraints.to_dict(),
            "constraint_misses": self.constraint_misses,
            "best_effort": self.best_effort,
            "front": list(self.front),
        }


def speedup_of(result: CandidateResult, baseline: CandidateResult | None) -> float | None:
    """The paired speedup where the candidate has one, else eager's p50 / the candidate's."""
    if not (result.ok and baseline and baseline.ok and result.measurement and baseline.measurement):
        return None
    if result.paired is not None and not result.recipe.baseline:
        return result.paired.speedup
    return baseline.measurement.p50 / result.measurement.p50


def geomean_speedup(baseline_p50: dict[str, float], p50: dict[str, float],
                    paired: dict[str, float] | None = None) -> float | None:
    """Geometric mean over the sets (in sorted order, as the worker sums them) of the paired
    speedup where there is one, else eager p50 / p50: what speedup_of gives per set."""
    paired = paired or {}
    if not p50 or any(s not in baseline_p50 for s in p50):
        return None
    ratios = [paired[s] if s in paired else baseline_p50[s] / p50[s] for s in sorted(p50)]
    return math.exp(sum(math.log(v) for v in ratios) / len(ratios))


def eager_drift(results: list[CandidateResult]) -> str:
    """How eager's p50 moved over the run: its own measurement at the start against the eager
    windows of every paired candidate, per input set. Empty when nothing was paired."""
    start = {r.input_set: r.measurement.p50 for r in results if r.recipe.baseline and r.ok and r.measurement}
    parts = []
    for label in sorted(start):
        later = sorted((r.paired.at, r.paired.eager_p50) for r in results
                       if r.input_set == label and r.paired is not None and not r.recipe.baseline)
        if not later:
            continue
        values = [v for _, v in later]
        low, high = min(values) / start[label] - 1, max(values) / start[label] - 1
        at = f"{label} {start[label] * 1e3:.3g} ms at the start"
        if len(values) == 1:
            parts.append(f"{at}, {values[0] * 1e3:.3g} ms beside 1 candidate later ({low:+.0%})")
        else:
            parts.append(f"{at}, {min(values) * 1e3:.3g}-{max(values) * 1e3:.3g} ms beside {len(values)} candidates "
                         f"({low:+.0%} to {high:+.0%}), {values[-1] * 1e3:.3g} ms last")
    return "eager drift over the run: " + "; ".join(parts) if parts else ""


@dataclasses.dataclass(frozen=True)
class Payoff:
    """When a candidate's one-time cost (build, compile, tuning, first call) beyond eager's has
    been repaid by the time it saves per call: `calls` None when it saves nothing per call."""

    label: str
    input_set: str
    extra_s: float  # one-time seconds beyond eager's
    saved_per_call_s: float
    calls: int | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def payoffs(results: list[CandidateResult]) -> list[Payoff]:
    """For every passing candidate at every input set, against eager at the same set."""
    baselines = {r.input_set: r for r in results if r.recipe.baseline and r.ok and r.measurement}
    found = []
    for r in results:
        base = baselines.get(r.input_set)
        if r.recipe.baseline or not (r.ok and r.measurement and base):
            continue
        m, b = r.measurement, base.measurement
        extra = max(0.0, (m.build_s + m.first_call_s) - (b.build_s + b.first_call_s))
        saved = b.p50 - m.p50
        calls = math.ceil(extra / saved) if saved > 0 else None
        found.append(Payoff(r.recipe.label, r.input_set, extra, saved, calls))
    return found


def _noise(a: CandidateResult, b: CandidateResult) -> float:
    """Relative p50 difference that this pair's spread cannot tell apart from zero."""
    return max(a.measurement.rel_iqr, b.measurement.rel_iqr)  # type: ignore[union-attr]


def select(results: list[CandidateResult], incumbent: dict[str, Any] | None = None,
           constraints: Constraints | None = None) -> Selection:
    constraints = constraints or Constraints()
    by_recipe: dict[str, dict[str, CandidateResult]] = defaultdict(dict)
    recipes: dict[str, Recipe] = {}
    for r in results:
        by_recipe[r.recipe.key][r.input_set] = r
        recipes[r.recipe.key] = r.recipe
    input_sets = sorted({r.input_set for r in results})
    baseline_key = next((k for k, rec in recipes.items() if rec.baseline), None)
    baseline = by_recipe.get(baseline_key, {}) if baseline_key else {}

    losers: dict[str, str] = {}
    ranked: list[Ranked] = []
    for key, per_set in by_recipe.items():
        recipe = recipes[key]
        failed = [r for r in per_set.values() if not r.ok]
        missing = [s for s in input_sets if s not in per_set]
        if failed:
            first = failed[0]
            losers[recipe.label] = f"{first.status} at {first.input_set}: {first.reason}"
            continue
        if missing:
            losers[recipe.label] = f"not run at {', '.join(missing)}"
            continue
        speedups = {s: speedup_of(per_set[s], baseline.get(s)) for s in input_sets}
        if any(v is None for v in speedups.values()):
            losers[recipe.label] = "no eager fp32 baseline to compare with"
            continue
        ranked.append(_ranked(recipe, per_set, baseline, speedups))  # type: ignore[arg-type]
    # Candidates measured in full first: a screened one was clearly slower than the best so far
    # when it ran, and its short, unpaired figure is not comparable with a paired one.
    ranked.sort(key=lambda r: (r.screened, -r.speedup))
    pareto = _front(ranked, by_recipe)

    if not ranked:
        return Selection(None, (), "no candidate passed validation on every input set", "", losers,
                         constraints=constraints)

    misses = {r.recipe.key: constraints.misses(by_recipe[r.recipe.key]) for r in ranked}
    meeting = _by_objective([r for r in ranked if not misses[r.recipe.key]], constraints, by_recipe)
    missing = sorted((r for r in ranked if misses[r.recipe.key]),
                     key=lambda r: (r.screened, _worst(misses[r.recipe.key]), _objective_key(r, constraints, by_recipe)))
    kept = _keep_incumbent(meeting, incumbent) if constraints.objective == "latency" else ""
    ranked = meeting + missing
    best_effort = not meeting
    best = ranked[0]
    constraint_misses = {r.recipe.label: "; ".join(map(str, misses[r.recipe.key])) for r in missing}
    for r in missing[1:] if best_effort else missing:
        losers[r.recipe.label] = f"misses the limits: {constraint_misses[r.recipe.label]}"
    sets = ", ".join(input_sets)
    drift = eager_drift(results)
    why_best = f"{best.recipe.label}: {best.speedup:.2f}x eager fp32 (geometric mean over {sets}{_interval(best)}), ok on all"
    if kept:
        why_best += f"; {kept}"
    why_best += _objective_note(best, constraints, by_recipe)
    if best_effort:
        why_best = (f"no candidate meets every limit ({constraints.describe()}); the closest: "
                    f"{why_best}; it misses {constraint_misses[best.recipe.label]}")
    elif constraints.limits:
        why_best += f"; meets {constraints.describe()}"
        unknown = constraints.unknown(by_recipe[best.recipe.key])
        if unknown:
            why_best += f" ({unknown})"
    if not best.recipe.baseline:
        if best.low <= 1:
            why_best += "; within noise of eager (its interval reaches 1x), so the gain is not established"
        noisy = [s for s in input_sets for r in (by_recipe[best.recipe.key][s], baseline[s]) if r.measurement.noise_warning]
        if noisy:
            why_best += f"; timing was noisy at {', '.join(sorted(set(noisy)))}: re-run on a quiet machine before trusting the figure"
    why_runner_up = ""
    if len(ranked) > 1:
        second = ranked[1]
        verdict = ("beyond noise: the intervals separate" if best.low > second.high
                   else "within noise: the intervals overlap")
        why_runner_up = (
            f"{second.recipe.label}: {second.speedup:.2f}x eager{_interval(second)} against {best.speedup:.2f}x for "
            f"{best.recipe.label} ({verdict})"
        )
        if second.recipe.label in constraint_misses:
            why_runner_up += f"; it misses {constraint_misses[second.recipe.label]}"
    return Selection(best.recipe, tuple(ranked), why_best, why_runner_up, losers, drift, constraints,
                     constraint_misses, best_effort, pareto)


def _objective_key(r: Ranked, constraints: Constraints, by_recipe: dict[str, dict[str, CandidateResult]]) -> tuple:
    """Sort key, best first, by the objective; the speedup breaks ties."""
    per_set = by_recipe[r.recipe.key]
    if constraints.objective in ("throughput", "cost"):
        # $/1M = price / throughput, one price for every candidate here: the same order.
        return (-limits.throughput(per_set), -r.speedup)
    if constraints.objective == "memory":
        return (limits.peak(per_set), -r.speedup)
    return (-r.speedup,)


def _by_objective(ranked: list[Ranked], constraints: Constraints, by_recipe) -> list[Ranked]:
    # Screened candidates stay last whatever the objective: their figure is a short, unpaired one.
    return sorted(ranked, key=lambda r: (r.screened, *_objective_key(r, constraints, by_recipe)))


def _worst(misses: list[Miss]) -> float:
    return max(m.excess for m in misses)


def _objective_note(best: Ranked, constraints: Constraints, by_recipe) -> str:
    per_set = by_recipe[best.recipe.key]
    if constraints.objective == "throughput":
        return f"; objective throughput: {limits.throughput(per_set):.4g} samples/s at its best input set"
    if constraints.objective == "memory":
        peak = limits.peak(per_set)
        figure = f"{peak / limits.MIB:.0f} MiB" if peak != float("inf") else "not measured"
        return f"; objective memory: peak {figure}"
    if constraints.objective == "cost":
        from hone.cost.arithmetic import cost_note

        return f"; objective cost: {cost_note(per_set, constraints.price)}"
    return ""


def _front(ranked: list[Ranked], by_recipe: dict[str, dict[str, CandidateResult]]) -> tuple[dict, ...]:
    """The Pareto front over every candidate ok at every set: the geometric-mean p50, the worst
    set's error and the largest peak memory (0 when unmeasured: memory then decides nothing)."""
    points = []
    for r in ranked:
        per_set = by_recipe[r.recipe.key]
        if any(x.measurement is None or not x.measurement.n or x.verdict is None for x in per_set.values()):
            continue
        p50 = math.exp(sum(math.log(x.measurement.p50) for x in per_set.values()) / len(per_set))
        error = max(x.verdict.error for x in per_set.values())
        peak = limits.peak(per_set)
        points.append(Point(r.recipe.label, p50, error, 0.0 if peak == float("inf") else peak))
    speedups = {r.recipe.label: r.speedup for r in ranked}
    return tuple({"label": p.label, "p50_s": p.p50_s, "error": p.error, "peak_bytes": p.peak_bytes,
                  "speedup": speedups[p.label]} for p in front(points))


def _keep_incumbent(ranked: list[Ranked], incumbent: dict[str, Any] | None) -> str:
    """Move the incumbent to the front of `ranked` when the leader does not beat it beyond noise;
    returns why (empty when the ranking stands)."""
    if not incumbent or not ranked or ranked[0].recipe.key == incumbent.get("key"):
        return ""
    at = next((i for i, r in enumerate(ranked) if r.recipe.key == incumbent.get("key")), None)
    if at is None or ranked[at].screened:
        return ""  # not ok everywhere this time, or clearly slower somewhere: the ranking stands
    leader, kept = ranked[0], ranked[at]
    if leader.low > kept.high:
        return ""
    ranked.insert(0, ranked.pop(at))
    return (f"kept as the winner of run {incumbent.get('run')}: {leader.recipe.label} at {leader.speedup:.2f}x"
            f"{_interval(leader)} does not beat it beyond noise")


def _interval(r: Ranked) -> str:
    if r.recipe.baseline:
        return ""
    how = "paired with eager, 95 %" if r.paired else "against eager at the start, IQR spread"
    return f", {r.low:.2f}-{r.high:.2f}x {how}"


def _ranked(recipe: Recipe, per_set: dict[str, CandidateResult], baseline: dict[str, CandidateResult],
            speedups: dict[str, float]) -> Ranked:
    """The geometric mean over sets and its interval: the paired one when every set was paired,
    else the IQR spread of the candidate and eager (the larger), as wide either way."""
    screened = any(r.stage == "screened" for r in per_set.values())
    if recipe.baseline:
        return Ranked(recipe, 1.0, speedups, 1.0, 1.0)
    pairs = [per_set[s].paired for s in sorted(speedups)]
    if all(p is not None for p in pairs):
        gm, low, high = combined(pairs)  # type: ignore[arg-type]
        return Ranked(recipe, gm, speedups, low, high, paired=True)
    gm = math.exp(sum(math.log(v) for v in speedups.values()) / len(speedups))
    noise = max(_noise(per_set[s], baseline[s]) for s in speedups)
    return Ranked(recipe, gm, speedups, gm / (1 + noise), gm * (1 + noise), screened=screened)

