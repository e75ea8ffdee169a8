"""Accuracy-driven fallback: a quantized candidate that misses the accuracy budget is retried
with its most sensitive layers kept in float, a few more each time, up to a bound.

The layers are ranked once per quantization scheme (validate.sensitivity, on calibration
samples); each retry is an ordinary recipe whose quantization step has `keep_float` set, so it
runs in its own worker, is validated and timed like any candidate, and the store keeps exactly
which layers stayed float. Every backend's quantization pass honours `keep_float`
(passes.quantize), so this works for PyTorch, ONNX Runtime and OpenVINO alike.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable

from hone.errors import InputError
from hone.passes.quantize import QuantizationPass
from hone.registry import PASSES
from hone.search.recipe import Recipe, Step
from hone.search.result import CandidateResult, Status
from hone.validate.sensitivity import LayerSensitivity


@dataclasses.dataclass(frozen=True)
class FallbackSettings:
    attempts: int = 3  # retries per candidate that missed the budget; 0 turns fallback off
    # At most this share of the quantizable layers is kept in float: past it, quantizing
    # what is left rarely pays, and the candidate is better reported as rejected.
    max_kept_fraction: float = 0.25

    def __post_init__(self) -> None:
        if self.attempts < 0:
            raise InputError(f"fallback attempts must be 0 or more, not {self.attempts}")
        if not 0 < self.max_kept_fraction <= 1:
            raise InputError(f"max_kept_fraction must be in (0, 1], not {self.max_kept_fraction}")


def quantization_step(recipe: Recipe) -> int | None:
    """Index of the recipe's quantization pass, or None when it quantizes nothing."""
    for i, step in enumerate(recipe.passes):
        if issubclass(PASSES.get(step.name), QuantizationPass):
            return i
    return None


def missed_budget(results: list[CandidateResult]) -> bool:
    """True when a result was rejected for its accuracy, not for a broken model: NaN/Inf or a
    wrong output shape is not fixed by keeping layers in float."""
    for r in results:
        if r.status is not Status.WRONG_ANSWER or r.verdict is None:
            continue
        if not r.verdict.broken:
            return True
    return False


def kept_counts(n_layers: int, settings: FallbackSettings) -> list[int]:
    """How many layers each retry keeps in float: geometric steps up to the bound, so a single
    bad layer is found first and a broadly sensitive model still reaches the bound."""
    bound = max(1, math.ceil(n_layers * settings.max_kept_fraction))
    counts = [max(1, round(bound ** ((i + 1) / settings.attempts))) for i in range(settings.attempts)]
    return sorted(set(min(c, bound) for c in counts))


def retry_recipe(recipe: Recipe, step_index: int, kept: list[str], ranked_by: str) -> Recipe:
    """`recipe` with `kept` layers in float (added to any the user kept)."""
    step = recipe.passes[step_index]
    already = tuple(step.config.keep_float)  # type: ignore[attr-defined]
    keep = already + tuple(n for n in kept if n not in already)
    config = dataclasses.replace(step.config, keep_float=keep)
    passes = tuple(Step(s.name, config) if i == step_index else s for i, s in enumerate(recipe.passes))
    base = recipe.label.split("+keep")[0]
    origin = f"accuracy fallback for {base}: the {len(kept)} most sensitive layers ({ranked_by}) kept in float"
    return dataclasses.replace(recipe, label=f"{base}+keep{len(kept)}", passes=passes, origin=origin)


def fallback(
    recipe: Recipe,
    results: list[CandidateResult],
    rank: Callable[[QuantizationPass], list[LayerSensitivity]],
    run: Callable[[Recipe], list[CandidateResult]],
    settings: FallbackSettings,
    cannot_pay: Callable[[list[CandidateResult]], str | None] = lambda results: None,
    on_refused: Callable[[str, str], None] = lambda label, why: None,
) -> list[CandidateResult]:
    """Retry `recipe` with more and more of its most sensitive layers in float until one passes
    (or the bound is reached). `run` runs a recipe at every input set, stopping at its first
    failure; every attempt's results are returned, passing or not. `cannot_pay(attempt)`: why
    no further retry can win, judged from the last attempt (its screening time), or None; then
    `on_refused(label, why)` is told and no more retries run."""
    index = quantization_step(recipe)
    if settings.attempts == 0 or index is None or not missed_budget(results):
        return []
    step = recipe.passes[index]
    quant_pass = PASSES.get(step.name)(step.config)
    try:
        ranking = [s for s in rank(quant_pass) if s.name not in step.config.keep_float]  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - the ranking runs the user's model in this process:
        # a model it cannot simulate costs the fallback, never the sweep.
        logging.getLogger(__name__).warning("no accuracy fallback for %s: ranking layers failed: %s: %s",
                                            recipe.label, type(exc).__name__, exc)
        return []
    if not ranking:
        return []
    attempts: list[CandidateResult] = []
    last = results
    for count in kept_counts(len(ranking), settings):
        why = cannot_pay(last)
        if why:
            on_refused(f"{recipe.label.split('+keep')[0]} fallback retries", why)
            break
        kept = [s.name for s in ranking[:count]]
        retried = run(retry_recipe(recipe, index, kept, "per-layer error against fp32 on calibration samples"))
        if not retried:
            break  # not run (the time budget): later attempts cost more
        attempts.extend(retried)
        last = retried
        if retried and all(r.ok for r in retried):
            break
        if not missed_budget(retried) and not all(r.ok for r in retried):
            break  # it failed for another reason (crash, NaN): more float layers will not help
    return attempts
