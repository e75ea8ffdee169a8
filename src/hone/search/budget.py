"""The sweep's time budget: which recipes still fit before the deadline.

A recipe's cost (`Recipe.cost`) is its expected worker time relative to the eager baseline's.
The baseline runs first, so its measured wall time per input set is the unit: a recipe is
started only when `cost x unit x input sets` fits in what is left, else it is left out with
that arithmetic as the reason. The plan puts advised recipes first and expensive ones
(autotuning, TVM tuning) last unless the profile advises them, so a tight budget drops the
speculative, expensive candidates and keeps the ones the profile points at.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from hone.search.recipe import Recipe
from hone.search.result import CandidateResult

EXPENSIVE_COST = 5.0  # from this cost on, a recipe is planned last unless the profile advises it
# Before the baseline has run (it runs first, so only if it was resumed without a wall time):
# a worker's start, model load, validation and timing on these machines.
DEFAULT_UNIT_S = 20.0


class TimeBudget:
    """`deadline`: time.monotonic() by which the sweep should be done; None: no budget."""

    def __init__(self, deadline: float | None, clock=time.monotonic,
                 known_cost: Callable[[Recipe, int], float | None] = lambda recipe, sets: None):
        """`known_cost(recipe, sets)`: its measured worker time for that many sets in an earlier
        run of this model here (search.prior), which replaces the cost guess; None: unknown."""
        self.deadline = deadline
        self.clock = clock
        self.known_cost = known_cost
        self.unit_s: float | None = None  # the baseline's worker wall time per input set

    def observe_baseline(self, results: Sequence[CandidateResult]) -> None:
        walls = [r.wall_s for r in results if r.wall_s > 0]
        if walls:
            self.unit_s = sum(walls) / len(walls)

    def estimate_s(self, recipe: Recipe, input_sets: int) -> float:
        return recipe.cost * (self.unit_s or DEFAULT_UNIT_S) * input_sets

    def refusal(self, recipe: Recipe, input_sets: int) -> str | None:
        """Why `recipe` does not fit in what is left, or None when it does (or there is no budget)."""
        if self.deadline is None:
            return None
        left = self.deadline - self.clock()
        known = self.known_cost(recipe, input_sets)
        needed = known if known is not None else self.estimate_s(recipe, input_sets)
        if needed <= left:
            return None
        if known is not None:
            return (f"over the time budget: needs ~{needed:.0f} s (its worker time for {input_sets} input set(s) in the "
                    f"last run of this model here), {max(left, 0):.0f} s left (raise --time-budget to run it)")
        unit = f"{self.unit_s:.0f} s" if self.unit_s else f"~{DEFAULT_UNIT_S:.0f} s (assumed)"
        return (
            f"over the time budget: needs ~{needed:.0f} s (cost {recipe.cost:g} x {unit} per eager candidate "
            f"x {input_sets} input set(s)), {max(left, 0):.0f} s left (raise --time-budget to run it)"
        )
