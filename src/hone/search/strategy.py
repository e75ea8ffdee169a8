"""The search strategy: what to run next, within the time budget, and which refinements can pay.

The sweep only executes: it asks the strategy for a proposal, runs it in a worker, and tells the
strategy what came back (Optuna's ask/tell, without a sampler: see docs/ARCHITECTURE.md). The
strategy owns

- the order: the plan (baseline first, then by the profile's findings and the prior learned
  from history; search.planner, search.prior);
- the budget: a proposal is made only if its estimated worker time fits in what is left
  (search.budget), else it is left out with the arithmetic (`on_skip`);
- refinement: after a quantized candidate misses the accuracy budget, its retries
  (search.fallback.refinements) come next, each planned only if it can recover the budget and
  beat the best so far (`on_pruned` says why not).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator

from hone.search.budget import TimeBudget
from hone.search.fallback import FallbackSettings, refinements
from hone.search.planner import PlannedRecipe
from hone.search.recipe import Recipe
from hone.search.result import CandidateResult


@dataclasses.dataclass(frozen=True)
class Proposal:
    recipe: Recipe
    unavailable: str | None = None  # why it cannot run here: reported, never built
    refinement: bool = False  # a retry of an earlier proposal: it stops at its first failing set


class Strategy:
    """`pending(recipe)`: how many input sets a recipe would still cost a worker (not resumed,
    not a known failure). `ran(recipe)`: whether the sweep already has it at every set (the
    previous winner, tried first, may be a refinement the fallback would propose again).
    `cannot_pay(attempt)`: why no retry of a missed attempt can beat the best so far, or None."""

    def __init__(
        self,
        planned: list[PlannedRecipe],
        budget: TimeBudget,
        input_sets: int,
        *,
        pending: Callable[[Recipe], int],
        ran: Callable[[Recipe], bool],
        fallback: FallbackSettings = FallbackSettings(),
        rank: Callable | None = None,
        cannot_pay: Callable[[list[CandidateResult]], str | None] = lambda attempt: None,
        on_skip: Callable[[str, str], None] = lambda label, why: None,
        on_more: Callable[[int], None] = lambda count: None,
        on_pruned: Callable[[str, str], None] = lambda label, why: None,
    ):
        self.queue = list(planned)
        self.budget, self.input_sets = budget, input_sets
        self.pending, self.ran = pending, ran
        self.fallback, self.rank, self.cannot_pay = fallback, rank, cannot_pay
        self.on_skip, self.on_more, self.on_pruned = on_skip, on_more, on_pruned
        self._refining: Generator[Recipe, list[CandidateResult], None] | None = None
        self._answer: list[CandidateResult] | None = None  # the last retry's results, for its generator

    def refusal(self, recipe: Recipe) -> str | None:
        missing = self.pending(recipe)
        return self.budget.refusal(recipe, missing) if missing else None  # resumed or known: free

    def ask(self) -> Proposal | None:
        """The next thing to run, or None when the search is over."""
        while True:
            if self._refining is not None:
                retry = self._next_refinement()
                if retry is None:
                    continue
                if self.ran(retry):  # the previous winner, tried first: no further retries needed
                    self._stop_refining()
                    continue
                why = self.refusal(retry)
                if why:
                    self.on_skip(retry.label, why)
                    self._stop_refining()  # later attempts keep more layers in float: they cost more
                    continue
                self.on_more(self.input_sets)
                return Proposal(retry, refinement=True)
            if not self.queue:
                return None
            item = self.queue.pop(0)
            # The baseline always runs: every speedup is measured against it.
            why = None if item.recipe.baseline or item.unavailable else self.refusal(item.recipe)
            if why:
                self.on_skip(item.recipe.label, why)
                continue
            return Proposal(item.recipe, item.unavailable)

    def tell(self, proposal: Proposal, results: list[CandidateResult]) -> None:
        if proposal.recipe.baseline:
            self.budget.observe_baseline(results)
        if proposal.refinement:
            self._answer = results
            return
        if proposal.unavailable is None and self.fallback.attempts and self.rank is not None:
            self._stop_refining()
            self._refining = refinements(proposal.recipe, results, self.rank, self.fallback, self.cannot_pay,
                                         self.on_pruned)
            self._answer = None

    def _next_refinement(self) -> Recipe | None:
        assert self._refining is not None
        try:
            return next(self._refining) if self._answer is None else self._refining.send(self._answer)
        except StopIteration:
            self._refining = None
            return None
        finally:
            self._answer = None

    def _stop_refining(self) -> None:
        if self._refining is not None:
            self._refining.close()
        self._refining, self._answer = None, None
