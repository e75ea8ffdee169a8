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
  beat the best so far (`on_pruned` says why not);
- when to stop early: once `patience` candidates in a row that cost worker time were all
  clearly slower than the best so far or failed (a plateau, as Ray Tune's experiment plateau
  stopper has it), the rest of the plan is left out with that reason. The plan puts the
  recipes the profile points at first, spread over the runtimes, so what is left is the
  speculative tail; a budget exists to be spent where it still pays, not to be used up.
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


@dataclasses.dataclass
class Plateau:
    """Counts the candidates since the last one that contended (within the screening margin of
    the best so far, search.sweep). `patience` 0: never reached."""

    patience: int = 0
    since: int = 0

    def observe(self, contends: bool | None) -> None:
        if contends is None:  # it cost no worker time (resumed, a known failure, unsupported)
            return
        self.since = 0 if contends else self.since + 1

    @property
    def reached(self) -> bool:
        return self.patience > 0 and self.since >= self.patience


class Strategy:
    """`pending(recipe)`: how many input sets a recipe would still cost a worker (not resumed,
    not a known failure). `ran(recipe)`: whether the sweep already has it at every set (the
    previous winner, tried first, may be a refinement the fallback would propose again).
    `cannot_pay(attempt)`: why no retry of a missed attempt can beat the best so far, or None.
    `contends(recipe, results)`: whether that proposal's results came within noise of the best
    so far (None: it cost no worker time); `plateau_reason()`: why the rest is left out once
    `patience` proposals in a row did not (0: never stop early)."""

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
        patience: int = 0,
        contends: Callable[[Recipe, list[CandidateResult]], bool | None] = lambda recipe, results: None,
        plateau_reason: Callable[[int], str] = lambda patience: f"plateau after {patience} candidates",
    ):
        self.queue = list(planned)
        self.budget, self.input_sets = budget, input_sets
        self.pending, self.ran = pending, ran
        self.fallback, self.rank, self.cannot_pay = fallback, rank, cannot_pay
        self.on_skip, self.on_more, self.on_pruned = on_skip, on_more, on_pruned
        self._refining: Generator[Recipe, list[CandidateResult], None] | None = None
        self._answer: list[CandidateResult] | None = None  # the last retry's results, for its generator
        self.plateau = Plateau(patience)
        self.contends, self.plateau_reason = contends, plateau_reason
        self._plateau_why: str | None = None  # once reached: the reason every later recipe carries

    def eta_s(self) -> float | None:
        """Expected seconds until the search is over: the queue's estimated worker time (known
        costs from earlier runs where there are any), capped by the time budget's deadline.
        None before the baseline has set the unit, when any estimate would be a guess."""
        if self.budget.unit_s is None:
            return None
        total = 0.0
        for item in self.queue:
            missing = self.pending(item.recipe)
            if item.unavailable or not missing:
                continue
            known = self.budget.known_cost(item.recipe, missing)
            total += known if known is not None else self.budget.estimate_s(item.recipe, missing)
        if self.budget.deadline is not None:
            total = min(total, max(self.budget.deadline - self.budget.clock(), 0.0))
        return total

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
            # The baseline always runs: every speedup is measured against it. What cannot run
            # here or is resumed costs nothing and is still reported, plateau or not.
            why = None if item.recipe.baseline or item.unavailable else self._stopped(item.recipe) or self.refusal(item.recipe)
            if why:
                self.on_skip(item.recipe.label, why)
                continue
            return Proposal(item.recipe, item.unavailable)

    def _stopped(self, recipe: Recipe) -> str | None:
        if not self.plateau.reached or not self.pending(recipe):
            return None
        if self._plateau_why is None:
            self._plateau_why = self.plateau_reason(self.plateau.patience)
        return self._plateau_why

    def tell(self, proposal: Proposal, results: list[CandidateResult]) -> None:
        if not proposal.recipe.baseline:
            self.plateau.observe(self.contends(proposal.recipe, results))
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
