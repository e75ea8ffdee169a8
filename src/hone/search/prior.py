"""The prior: what earlier runs on this machine predict for this one's candidates.

Two kinds of evidence, both read by search.history from the store:

- this model on this machine (the latest finished run): each recipe's measured speedup, how far
  it got, and its worker time. With the same library versions, a repeat run confirms that run's
  answer rather than searching again: a recipe it measured slower than its winner (clearly, by
  more than the screening margin or beyond noise, or within noise: the winner stays unless
  beaten beyond noise, search.select), or whose every attempt missed the accuracy budget, or
  that it did not measure at all (its time budget left it out), is left out with the evidence
  (`explore` builds it anyway). Worker times replace the budget's cost guess.
- other models with a similar op mix on this machine (the cosine of their profiles' op-time
  shares, at least SIMILAR): their recipes' speedups, averaged by similarity, predict this one's.

The plan keeps the baseline first and the previous winner next (History.winner_first); the rest
is ordered by predicted speedup, highest first. A recipe with no evidence is predicted the
median of those with some (neither first nor last; after them at a tie); with no evidence at
all the profile's order stands.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import TYPE_CHECKING

from hone.search.execute import SCREEN_MARGIN

if TYPE_CHECKING:
    from hone.search.history import History
    from hone.search.planner import Plan
    from hone.search.recipe import Recipe

SIMILAR = 0.8  # cosine of op-time shares from which another model's results count
OP_MIX_TOP = 16  # op types kept in a run's op mix


@dataclasses.dataclass(frozen=True)
class Measured:
    """One recipe in an earlier run of this model here."""

    run_id: int
    speedup: float | None  # geometric mean over sets; None: it failed somewhere
    best_speedup: float | None  # that run's winner's
    wall_s: float  # worker time over its sets
    sets: int
    missed_accuracy: bool  # wrong answer (and no refinement of it passed)
    same_versions: bool
    high: float | None = None  # the top of its speedup's interval in that run
    best_low: float | None = None  # the bottom of the winner's

    def not_worth(self) -> str | None:
        """Why building it again cannot pay, or None."""
        if not self.same_versions:
            return None
        if self.missed_accuracy:
            return (f"run {self.run_id} of this model here (same library versions) found it over the accuracy budget, "
                    f"retries included")
        if self.speedup is None or self.best_speedup is None:
            return None
        if self.speedup >= self.best_speedup:
            return None  # as fast as the winner by the point estimate (the winner was kept over it)
        if self.speedup * (1 + SCREEN_MARGIN) < self.best_speedup:
            return (f"run {self.run_id} of this model here measured {self.speedup:.2f}x against its winner's "
                    f"{self.best_speedup:.2f}x, more than {SCREEN_MARGIN:.0%} slower")
        if self.high is not None and self.best_low is not None and self.high < self.best_low:
            return (f"run {self.run_id} of this model here measured {self.speedup:.2f}x (at most {self.high:.2f}x) "
                    f"against its winner's {self.best_speedup:.2f}x (at least {self.best_low:.2f}x): slower beyond noise")
        # Within noise of the winner, but slower: a repeat run keeps its winner unless beaten beyond
        # noise (search.select), which a recipe that measured slower will hardly do on the same
        # machine and versions; re-measuring it would cost a full build and pairing per set.
        return (f"run {self.run_id} of this model here measured {self.speedup:.2f}x against its winner's "
                f"{self.best_speedup:.2f}x, within noise; a repeat run keeps its winner unless beaten beyond noise")


def op_mix(ops: list) -> dict[str, float]:
    """Share of op time per op type (the OP_MIX_TOP largest): what similarity is computed on."""
    total = sum(o.time_s for o in ops)
    if total <= 0:
        return {}
    top = sorted(ops, key=lambda o: o.time_s, reverse=True)[:OP_MIX_TOP]
    return {o.name: o.time_s / total for o in top}


def similarity(a: dict[str, float], b: dict[str, float]) -> float:
    dot = sum(v * b.get(k, 0.0) for k, v in a.items())
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return dot / norm if norm > 0 else 0.0


def predicted_speedup(recipe: "Recipe", history: "History") -> tuple[float, str] | None:
    """(speedup, where it comes from), or None without evidence."""
    measured = history.measured.get(recipe.key)
    if measured is not None and measured.speedup is not None:
        return measured.speedup, f"run {measured.run_id} of this model here: {measured.speedup:.2f}x"
    similar = history.similar.get(recipe.label)
    if similar:
        weight = sum(w for w, _ in similar)
        value = math.exp(sum(w * math.log(s) for w, s in similar) / weight)
        return value, f"{len(similar)} run(s) of models with a similar op mix here: {value:.2f}x"
    return None


def known_cost_s(recipe: "Recipe", history: "History", input_sets: int) -> float | None:
    """The worker time this recipe took in the latest run of this model here, per the sets asked."""
    measured = history.measured.get(recipe.key)
    if measured is None or measured.wall_s <= 0 or measured.sets <= 0:
        return None
    return measured.wall_s / measured.sets * input_sets


def apply_prior(plan: "Plan", history: "History", explore: bool = False) -> "Plan":
    """Leave out what the same model's history says cannot pay (unless `explore`), then order
    the rest by predicted speedup after the baseline and the previous winner."""
    items = list(plan)
    earlier = next((m for m in history.measured.values() if m.same_versions), None)
    if not explore:
        kept = []
        for item in items:
            measured = history.measured.get(item.recipe.key)
            if item.recipe.baseline or item.recipe.key == history.winner:
                why = None
            elif measured is not None:
                why = measured.not_worth()
            elif earlier is not None:
                # That run is this model's answer here: what it did not measure (its budget left it
                # out) is not worth a second run's time, which confirms the answer instead.
                why = (f"run {earlier.run_id} of this model here (same library versions) did not measure it, "
                       f"and a repeat run confirms that run's contenders")
            else:
                why = None
            if why:
                plan.pruned[item.recipe.label] = f"{why}: not rebuilt (--explore builds it)"
            else:
                kept.append(item)
        items = kept
    head = [i for i in items if i.recipe.baseline or i.recipe.key == history.winner]
    rest = [i for i in items if i not in head]
    predictions = {i.recipe.key: predicted_speedup(i.recipe, history) for i in rest}
    known = [p[0] for p in predictions.values() if p is not None]
    if known:
        neutral = statistics.median(known)
        # Evidence before none at the same prediction; then the profile's order (a stable sort).
        rest.sort(key=lambda i: (-(predictions[i.recipe.key] or (neutral, ""))[0], predictions[i.recipe.key] is None))
        rest = [_with_origin(i, predictions[i.recipe.key]) for i in rest]
    plan[:] = head + rest
    return plan


def _with_origin(item, prediction: tuple[float, str] | None):
    if prediction is None:
        return item
    origin = "; ".join(x for x in (item.recipe.origin, f"prior {prediction[1]}") if x)
    return dataclasses.replace(item, recipe=dataclasses.replace(item.recipe, origin=origin))
