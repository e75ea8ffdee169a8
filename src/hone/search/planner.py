"""plan(): every recipe that fits this workload and machine, each with why it is there.

Every pass and runtime proposes the recipes it anchors (Plugin.propose), so a new backend plans
itself. Recipes whose steps cannot run here stay in the plan with the reason: the sweep reports
them as `unsupported` instead of hiding them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hone.errors import InputError
from hone.profiler.records import Advice
from hone.registry import PASSES, RUNTIMES
from hone.search.budget import EXPENSIVE_COST
from hone.search.recipe import Recipe
from hone.search.select import BASELINE_LABEL

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload


@dataclasses.dataclass(frozen=True)
class PlannedRecipe:
    recipe: Recipe
    unavailable: str | None = None  # why it cannot run here; None when it can


def unavailable_reason(recipe: Recipe, hw: "Hardware", device: str) -> str | None:
    for step in recipe.passes:
        reason = PASSES.get(step.name).available(hw, device)
        if reason:
            return f"{step.name}: {reason}"
    reason = RUNTIMES.get(recipe.runtime.name).available(hw, device)
    return f"{recipe.runtime.name}: {reason}" if reason else None


def plan(
    workload: "Workload",
    hw: "Hardware",
    device: str = "cpu",
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    recipes: Iterable[Recipe] | None = None,
    advice: list[Advice] | None = None,
    prune: dict[str, str] | None = None,
) -> list[PlannedRecipe]:
    """The baseline (eager fp32) is always first and always included: speedups need it.

    `advice` (from the profile) orders the rest, advised recipes first by rank, and each
    advised recipe's origin becomes the finding behind it. `prune` (label -> why) leaves out
    what the profile shows cannot pay off, unless `include` names it."""
    if recipes is None:
        proposed: list[Recipe] = []
        for cls in [*RUNTIMES, *PASSES]:
            proposed.extend(cls.propose(workload, hw, device))
    else:
        proposed = list(recipes)
        if not any(r.label == BASELINE_LABEL for r in proposed):
            proposed.insert(0, RUNTIMES.get("eager").propose(workload, hw, device)[0])

    unique: dict[str, Recipe] = {}
    for recipe in proposed:
        unique.setdefault(recipe.key, recipe)
    labels = [r.label for r in unique.values()]
    for wanted in (*(include or ()), *(exclude or ())):
        if wanted not in labels:
            raise InputError(f"no recipe named {wanted!r} in this plan", hint=f"planned: {', '.join(labels)}")
    chosen = [
        r
        for r in unique.values()
        if r.label == BASELINE_LABEL
        or ((not include or r.label in include) and r.label not in (exclude or ()))
    ]
    pruned = {label for label in (prune or {}) if label not in (include or ())}
    chosen = [r for r in chosen if r.label not in pruned]
    by_label = {a.recipe: a for a in advice or ()}
    chosen = [
        dataclasses.replace(r, origin=f"{by_label[r.label].finding} -> {by_label[r.label].reason}")
        if r.label in by_label else r
        for r in chosen
    ]
    # Baseline first, then advised recipes by rank, then the rest in proposal order, the
    # expensive ones (autotuning, tuning) last: a time budget then drops those first (stable sort).
    def order(r: Recipe) -> tuple[bool, int]:
        if r.label in by_label:
            return r.label != BASELINE_LABEL, by_label[r.label].rank
        return r.label != BASELINE_LABEL, 2_000 if r.cost >= EXPENSIVE_COST else 1_000

    chosen.sort(key=order)
    return [PlannedRecipe(r, unavailable_reason(r, hw, device)) for r in chosen]

