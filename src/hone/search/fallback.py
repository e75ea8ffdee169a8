"""Accuracy-driven fallback: a quantized candidate that misses the accuracy budget is retried
with its most sensitive layers kept in float, a few more each time, up to a bound. A candidate
with any other pass that can back off (Pass.back_off: pruning at a lower ratio) is retried with
that pass's backed-off configs, under the same bound and the same can-it-pay rules.

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
from collections.abc import Callable, Generator

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


def back_off_step(recipe: Recipe) -> int | None:
    """Index of the recipe's first pass that can back off, or None."""
    for i, step in enumerate(recipe.passes):
        if PASSES.get(step.name)(step.config).back_off(1) is not None:
            return i
    return None


def refinable(recipe: Recipe) -> bool:
    """Whether a missed accuracy budget can be retried: a quantization step or a back-off."""
    return quantization_step(recipe) is not None or back_off_step(recipe) is not None


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


# The ranking is simulated quantization (validate.sensitivity), an estimate of what the backend
# will do: a retry is refused only when its predicted miss is more than this many times the budget.
RECOVERY_SLACK = 2.0


def miss_ratio(results: list[CandidateResult]) -> float | None:
    """How far the attempt missed: the task metric's drop over the allowed drop (1.0: on the
    budget), the worst at any set. None when no metric decided (the tensor tolerances mix an
    absolute and a relative part, from which no single ratio can be read)."""
    worst = None
    for r in results:
        metric = r.verdict.metric if r.verdict is not None else None
        if r.status is not Status.WRONG_ANSWER or metric is None or metric.passed:
            continue
        if metric.budget <= 0:
            return None  # nothing may change: no share of layers kept float predicts a pass
        ratio = abs(metric.delta) / metric.budget
        worst = ratio if worst is None else max(worst, ratio)
    return worst


def predicted_miss(miss: float, ranking: list[LayerSensitivity], kept_before: int, kept_after: int) -> tuple[float, float]:
    """(predicted miss ratio, share of the summed per-layer error that the kept layers carry).

    First order: each layer's error adds to the output's squared error on its own (that is
    what the ranking measured, one layer at a time), and the metric's drop grows with the
    output error's magnitude, so keeping layers in float scales the miss by the square root of
    the error share still quantized."""
    total = sum(s.error for s in ranking)
    if total <= 0:
        return miss, 0.0
    share = lambda k: sum(s.error for s in ranking[:k]) / total  # noqa: E731
    left_before, left_after = 1 - share(kept_before), 1 - share(kept_after)
    if left_before <= 0:
        return miss, share(kept_after)
    return miss * math.sqrt(max(left_after, 0.0) / left_before), share(kept_after)


def refinements(
    recipe: Recipe,
    results: list[CandidateResult],
    rank: Callable[[QuantizationPass], list[LayerSensitivity]],
    settings: FallbackSettings,
    cannot_pay: Callable[[list[CandidateResult]], str | None] = lambda results: None,
    on_refused: Callable[[str, str], None] = lambda label, why: None,
) -> Generator[Recipe, list[CandidateResult], None]:
    """The retries of `recipe` (its most sensitive layers kept in float, more each time), one at
    a time: each is sent the retry's results back and yields the next, until one passes or the
    bound is reached. A retry is planned only where it can pay: it is predicted to recover the
    budget (predicted_miss, from the ranking and the last attempt's miss) and the last attempt's
    screening time does not rule out beating the best so far (`cannot_pay`). Otherwise
    `on_refused(what, why)` is told the arithmetic and the retries end. An empty result (not
    run: the time budget) ends them too: later attempts cost more."""
    index = quantization_step(recipe)
    if settings.attempts == 0 or not missed_budget(results):
        return
    if index is None:
        yield from back_offs(recipe, results, settings, cannot_pay, on_refused)
        return
    step = recipe.passes[index]
    quant_pass = PASSES.get(step.name)(step.config)
    try:
        ranking = [s for s in rank(quant_pass) if s.name not in step.config.keep_float]  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - the ranking runs the user's model in this process:
        # a model it cannot simulate costs the fallback, never the sweep.
        logging.getLogger(__name__).warning("no accuracy fallback for %s: ranking layers failed: %s: %s",
                                            recipe.label, type(exc).__name__, exc)
        return
    if not ranking:
        return
    base = recipe.label.split("+keep")[0]
    what = f"{base} fallback retries"
    last, kept_last = results, 0
    counts = kept_counts(len(ranking), settings)
    for i, count in enumerate(counts):
        why = cannot_pay(last)
        if why:
            on_refused(what, why)
            return
        miss = miss_ratio(last)
        if miss is not None:
            predicted, share = predicted_miss(miss, ranking, kept_last, count)
            if predicted > RECOVERY_SLACK:
                if i + 1 < len(counts):
                    continue  # this many cannot recover it; more kept layers may
                share_before = predicted_miss(miss, ranking, 0, kept_last)[1]
                on_refused(what, (
                    f"cannot recover the budget: the last attempt missed it {miss:.1f}x (drop over allowed drop) with "
                    f"{kept_last} layer(s) in float; keeping the {count} most sensitive (the most allowed, {share:.0%} of "
                    f"the summed per-layer error) predicts {miss:.1f} x sqrt({1 - share:.2f} / {1 - share_before:.2f}) = "
                    f"{predicted:.1f}x, beyond the {RECOVERY_SLACK:g}x this estimate is trusted to"))
                return
        kept = [s.name for s in ranking[:count]]
        retried = yield retry_recipe(recipe, index, kept, "per-layer error against fp32 on calibration samples")
        if not retried:
            return
        last, kept_last = retried, count
        if all(r.ok for r in retried):
            return
        if not missed_budget(retried):
            return  # it failed for another reason (crash, NaN): more float layers will not help


def back_offs(
    recipe: Recipe,
    results: list[CandidateResult],
    settings: FallbackSettings,
    cannot_pay: Callable[[list[CandidateResult]], str | None] = lambda results: None,
    on_refused: Callable[[str, str], None] = lambda label, why: None,
) -> Generator[Recipe, list[CandidateResult], None]:
    """The retries of a recipe whose pass can back off (a lower pruning ratio), like
    `refinements`: each is planned only if it is predicted to recover the budget (the last
    attempt's miss scaled by the back-off, first order) and can still beat the best so far."""
    index = back_off_step(recipe)
    if index is None:
        return
    step = recipe.passes[index]
    plugin = PASSES.get(step.name)(step.config)
    what = f"{recipe.label} back-off retries"
    last, scale_last = results, 1.0
    for attempt in range(1, settings.attempts + 1):
        backed = plugin.back_off(attempt)
        if backed is None:
            return
        why = cannot_pay(last)
        if why:
            on_refused(what, why)
            return
        miss = miss_ratio(last)
        if miss is not None:
            predicted = miss * backed.scale / scale_last
            if predicted > RECOVERY_SLACK:
                if attempt < settings.attempts and plugin.back_off(attempt + 1) is not None:
                    continue  # this back-off cannot recover it; a further one may
                on_refused(what, (
                    f"cannot recover the budget: the last attempt missed it {miss:.1f}x (drop over allowed drop); "
                    f"{backed.what} predicts {miss:.1f} x {backed.scale / scale_last:.2f} = {predicted:.1f}x, "
                    f"beyond the {RECOVERY_SLACK:g}x this estimate is trusted to"))
                return
        passes = tuple(Step(s.name, backed.config) if i == index else s for i, s in enumerate(recipe.passes))
        label = recipe.label.replace(backed.was, backed.tag, 1) if backed.was in recipe.label else f"{recipe.label}+{backed.tag}"
        origin = f"accuracy back-off for {recipe.label}: {backed.what}"
        retried = yield dataclasses.replace(recipe, label=label, passes=passes, origin=origin)
        if not retried:
            return
        last, scale_last = retried, backed.scale
        if all(r.ok for r in retried) or not missed_budget(retried):
            return


def fallback(
    recipe: Recipe,
    results: list[CandidateResult],
    rank: Callable[[QuantizationPass], list[LayerSensitivity]],
    run: Callable[[Recipe], list[CandidateResult]],
    settings: FallbackSettings,
    cannot_pay: Callable[[list[CandidateResult]], str | None] = lambda results: None,
    on_refused: Callable[[str, str], None] = lambda label, why: None,
) -> list[CandidateResult]:
    """Every retry `refinements` plans, run with `run` (a recipe at every input set, stopping at
    its first failure): every attempt's results, passing or not."""
    attempts: list[CandidateResult] = []
    planned = refinements(recipe, results, rank, settings, cannot_pay, on_refused)
    retried: list[CandidateResult] | None = None
    while True:
        try:
            retry = next(planned) if retried is None else planned.send(retried)
        except StopIteration:
            return attempts
        retried = run(retry)
        attempts.extend(retried)
