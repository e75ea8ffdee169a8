"""Pick the winner: the fastest recipe that is `ok` on every input set.

Speed is the geometric mean over input sets of eager's p50 / the recipe's p50, both measured in
the same sweep. A recipe that failed anywhere cannot win; neither can one that is faster only
within noise, which we say rather than claim a speedup we did not measure.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Any

from hone.search.recipe import Recipe
from hone.search.result import CandidateResult


@dataclasses.dataclass(frozen=True)
class Ranked:
    recipe: Recipe
    speedup: float  # geometric mean over input sets, vs eager fp32
    speedups: dict[str, float]  # per input set


@dataclasses.dataclass(frozen=True)
class Selection:
    best: Recipe | None
    ranking: tuple[Ranked, ...]  # ok recipes, fastest first
    why_best: str
    why_runner_up: str
    losers: dict[str, str]  # recipe label -> why it cannot be selected

    def to_dict(self) -> dict:
        return {
            "best": self.best.to_dict() if self.best else None,
            "ranking": [
                {"label": r.recipe.label, "speedup": r.speedup, "speedups": r.speedups} for r in self.ranking
            ],
            "why_best": self.why_best,
            "why_runner_up": self.why_runner_up,
            "losers": self.losers,
        }


def speedup_of(result: CandidateResult, baseline: CandidateResult | None) -> float | None:
    if not (result.ok and baseline and baseline.ok and result.measurement and baseline.measurement):
        return None
    return baseline.measurement.p50 / result.measurement.p50


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


def select(results: list[CandidateResult]) -> Selection:
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
        gm = math.exp(sum(math.log(v) for v in speedups.values()) / len(speedups))  # type: ignore[arg-type]
        ranked.append(Ranked(recipe, gm, speedups))  # type: ignore[arg-type]
    ranked.sort(key=lambda r: r.speedup, reverse=True)

    if not ranked:
        return Selection(None, (), "no candidate passed validation on every input set", "", losers)

    best = ranked[0]
    sets = ", ".join(input_sets)
    why_best = f"{best.recipe.label}: {best.speedup:.2f}x eager fp32 (geometric mean over {sets}), ok on all"
    if not best.recipe.baseline:
        noise = max(_noise(by_recipe[best.recipe.key][s], baseline[s]) for s in input_sets)
        if best.speedup - 1 <= noise:
            why_best += f"; within noise of eager (spread {noise:.0%}), so the gain is not established"
        noisy = [s for s in input_sets for r in (by_recipe[best.recipe.key][s], baseline[s]) if r.measurement.noise_warning]
        if noisy:
            why_best += f"; timing was noisy at {', '.join(sorted(set(noisy)))}: re-run on a quiet machine before trusting the figure"
    why_runner_up = ""
    if len(ranked) > 1:
        second = ranked[1]
        gap = best.speedup / second.speedup - 1
        noise = max(
            _noise(by_recipe[best.recipe.key][s], by_recipe[second.recipe.key][s]) for s in input_sets
        )
        verdict = "within noise" if gap <= noise else "beyond noise"
        why_runner_up = (
            f"{second.recipe.label}: {second.speedup:.2f}x eager against {best.speedup:.2f}x for "
            f"{best.recipe.label} ({verdict}: spread {noise:.0%})"
        )
    return Selection(best.recipe, tuple(ranked), why_best, why_runner_up, losers)

