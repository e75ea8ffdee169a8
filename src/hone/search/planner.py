"""plan(): every recipe the composer makes for this workload and machine, ordered by the
profile's findings, each with why it is there.

The composer (search.compose) builds the chains from the plugins' declarations; the planner
orders them: the baseline first, then recipes whose steps claim the profile's findings (gain =
share x claim weight summed over findings, the finding behind the strongest claim becoming the
recipe's origin), by gain per unit of cost and spread over the runtimes, then the rest in
composition order, the expensive ones last. Where overhead dominates, a recipe
with a step that pays only for memory or compute (lower precision) is left out, with the reason.
Recipes whose steps cannot run here stay in the plan with the reason: the sweep reports them as
`unsupported` instead of hiding them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hone.errors import InputError
from hone.profiler.advice import _pct, claim_reason, overhead_dominates
from hone.profiler.records import Finding
from hone.registry import PASSES, RUNTIMES
from hone.search.budget import EXPENSIVE_COST
from hone.search.compose import Composer, Stack
from hone.search.recipe import Recipe

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload


@dataclasses.dataclass(frozen=True)
class PlannedRecipe:
    recipe: Recipe
    unavailable: str | None = None  # why it cannot run here; None when it can


class Plan(list):
    """The planned recipes (a list of PlannedRecipe, baseline first) and what the findings left
    out (`pruned`: label -> why not planned)."""

    def __init__(self, items: Iterable[PlannedRecipe] = (), pruned: dict[str, str] | None = None):
        super().__init__(items)
        self.pruned = dict(pruned or {})


def unavailable_reason(recipe: Recipe, hw: "Hardware", device: str) -> str | None:
    for step in recipe.passes:
        reason = PASSES.get(step.name).available(hw, device)
        if reason:
            return f"{step.name}: {reason}"
    reason = RUNTIMES.get(recipe.runtime.name).available(hw, device)
    return f"{recipe.runtime.name}: {reason}" if reason else None


def score(stack: Stack, found: list[Finding]) -> tuple[float, str] | None:
    """How much of the profile the stack addresses: for each finding, its steps' strongest
    claim on it (share x weight), summed over the findings, so a stack that lowers precision
    (compute) and compiles away dispatch (overhead) outranks either step alone; with the origin
    of the strongest claim ("finding -> reason"). None when no step addresses a finding here."""
    total, strongest = 0.0, None
    for finding in found:
        best: tuple[float, str] | None = None
        for kind, claim, _link in stack.claims():
            if kind != finding.kind:
                continue
            reason = claim_reason(claim, finding)
            if reason is None:
                continue
            weight = finding.share * claim.weight
            if best is None or weight > best[0]:
                best = (weight, f"{finding.text} -> {reason}")
        if best is not None:
            total += best[0]
            strongest = best if strongest is None or best[0] > strongest[0] else strongest
    return None if strongest is None else (total, strongest[1])


def plan(
    workload: "Workload",
    hw: "Hardware",
    device: str = "cpu",
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    recipes: Iterable[Recipe | str] | None = None,
    findings: list[Finding] | None = None,
) -> Plan:
    """The baseline (eager fp32) is always first and always included: speedups need it.

    `recipes`: exactly these (Recipe objects, or stacks by name: "pt2e-int8+aoti"), plus the
    baseline. `include` / `exclude` pick from the default plan by label; an included label that
    the default plan does not hold is composed as a stack. `findings` (from the profile) order
    the plan and prune what cannot pay, unless `include` names it."""
    composer = Composer(workload, hw, device)
    stacks = composer.default_stacks()
    baseline = next(s for s in stacks if s.recipe.baseline)
    include, exclude = list(include or ()), list(exclude or ())
    if recipes is not None:
        chosen = [r if isinstance(r, Recipe) else composer.parse(r).recipe for r in recipes]
        if not any(r.baseline for r in chosen):
            chosen.insert(0, baseline.recipe)
        unique = list({r.key: r for r in chosen}.values())
        return Plan(PlannedRecipe(r, unavailable_reason(r, hw, device)) for r in unique)

    by_label = {s.recipe.label: s for s in stacks}
    for wanted in include:
        if wanted not in by_label:
            stack = _named_stack(composer, wanted, by_label)
            stacks.append(stack)
            by_label[wanted] = stack
    for unwanted in exclude:
        if unwanted not in by_label:
            raise InputError(f"no recipe named {unwanted!r} in this plan", hint=f"planned: {', '.join(by_label)}")
    chosen_stacks = [
        s for s in stacks
        if s.recipe.baseline or ((not include or s.recipe.label in include) and s.recipe.label not in exclude)
    ]

    found = findings or []
    pruned: dict[str, str] = {}
    dominant = overhead_dominates(found)
    if dominant is not None:
        for s in chosen_stacks:
            if "overhead" not in s.pays_for and s.recipe.label not in include and not s.recipe.baseline:
                pruned[s.recipe.label] = (
                    f"overhead-bound ({_pct(dominant.share)} of wall time outside arithmetic): "
                    f"{_lower_precision_steps(s)} adds casts and saves no dispatch")
        chosen_stacks = [s for s in chosen_stacks if s.recipe.label not in pruned]

    # Baseline first, then recipes addressing a finding (search order below), then the rest in
    # composition order, the expensive ones (autotuning, tuning) last: a time budget then drops
    # those first.
    scored = {s.recipe.key: score(s, found) for s in chosen_stacks}
    position = {s.recipe.key: i for i, s in enumerate(chosen_stacks)}
    baseline_stacks = [s for s in chosen_stacks if s.recipe.baseline]
    cannot_run = {s.recipe.key: unavailable_reason(s.recipe, hw, device) for s in chosen_stacks}
    blocked = {key for key, reason in cannot_run.items() if reason}
    addressing = _by_gain_per_cost([s for s in chosen_stacks if not s.recipe.baseline and scored[s.recipe.key]],
                                   {k: v[0] for k, v in scored.items() if v is not None}, blocked)
    rest = sorted((s for s in chosen_stacks if not s.recipe.baseline and scored[s.recipe.key] is None),
                  key=lambda s: (s.recipe.cost >= EXPENSIVE_COST, position[s.recipe.key]))
    chosen_stacks = [*baseline_stacks, *addressing, *rest]
    planned = []
    for s in chosen_stacks:
        hit = scored[s.recipe.key]
        recipe = dataclasses.replace(s.recipe, origin=hit[1]) if hit is not None and not s.recipe.baseline else s.recipe
        planned.append(PlannedRecipe(recipe, cannot_run[s.recipe.key]))
    return Plan(planned, pruned)


def _by_gain_per_cost(stacks: list[Stack], gain: dict[str, float], blocked: set[str]) -> list[Stack]:
    """The order to try the stacks that address a finding, greedily: next is the one with the
    most claimed gain per unit of cost (what a time budget buys), its gain divided by one plus
    the number already placed on the same runtime. The claims tell runtimes apart less well
    than variants of one runtime (ONNX Runtime's kernels against Inductor's are a measurement,
    not a declaration), so the first candidates spread over the runtimes before second variants
    of one of them; a tie keeps composition order. A recipe that cannot run here (`blocked`)
    covers nothing: it does not count against its runtime."""
    remaining, placed, same_runtime = list(stacks), [], {}
    while remaining:
        def worth(s: Stack) -> float:
            return gain[s.recipe.key] / max(s.recipe.cost, 1e-9) / (1 + same_runtime.get(s.recipe.runtime.name, 0))
        best = max(remaining, key=worth)  # max keeps the first of equals: composition order
        remaining.remove(best)
        placed.append(best)
        if best.recipe.key not in blocked:
            same_runtime[best.recipe.runtime.name] = same_runtime.get(best.recipe.runtime.name, 0) + 1
    return placed


def _named_stack(composer: Composer, label: str, by_label: dict[str, Stack]) -> Stack:
    try:
        return composer.parse(label)
    except InputError as exc:
        raise InputError(f"no recipe named {label!r} in this plan, and it does not compose as a stack: {exc.message}",
                         hint=f"planned: {', '.join(by_label)}") from exc


def _lower_precision_steps(stack: Stack) -> str:
    return ", ".join(link.describe() for link in stack.links if "overhead" not in link.variant.pays_for)
