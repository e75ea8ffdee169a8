"""sweep(): every planned recipe at every input set, one worker per recipe (built once, rebuilt
only for a set its runner does not serve), each result stored the moment its worker ends. The
sweep always finishes; resumed candidates are not run again.

Workers save the artifacts of builds that could win into the run's artifact directory; once
the sweep is over, every artifact but the winner's is deleted."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hone import scratch
from hone.bench.measure import MeasureSettings
from hone.errors import HarnessError, InputError
from hone.models.workload import Workload
from hone.passes.quantize import QuantizationPass
from hone.search.budget import TimeBudget
from hone.search.control import check_control
from hone.search.build import step_paths
from hone.search.constraints import Constraints
from hone.search.fallback import FallbackSettings, refinable
from hone.search.history import History
from hone.search.job import Bundle, Job
from hone.search.memory_watch import DEFAULT_FRACTION
from hone.search.pareto import Point, front
from hone.search.planner import PlannedRecipe
from hone.search.prior import known_cost_s
from hone.search.recipe import Recipe
from hone.search.result import CandidateResult, Status
from hone.search.execute import SCREEN_MARGIN, safe_name
from hone.search.select import geomean_speedup, select
from hone.search.strategy import Strategy
from hone.search.executor import Executor, SubprocessExecutor
from hone.search.zygote import installed_modules_of, warm_start_fits
from hone.validate.reference import Reference
from hone.validate.sensitivity import LayerSensitivity, rank_layers
from hone.validate.verdict import AccuracyBudget

OnResult = Callable[[CandidateResult, bool], None]  # (result, was it resumed from the store)
CALIBRATION_SAMPLES = 128  # enough for MinMax/percentile scales of small models


@dataclasses.dataclass(frozen=True)
class SweepSettings:
    device: str
    threads: int
    timeout_s: float
    accuracy_budget: AccuracyBudget
    measure: MeasureSettings = MeasureSettings()
    fallback: FallbackSettings = FallbackSettings()
    time_budget_s: float | None = None  # the whole run's, from `started` (None: no budget)
    paired: bool = True  # time each confirmed candidate against eager in its worker (bench.paired)
    # Stop early after this many candidates in a row clearly slower than the best or failed
    # (search.strategy.Plateau); 0: never. Only under a time budget: without one, everything runs.
    patience: int = 0
    # The objective and limits selection will apply (search.constraints): under anything but the
    # default, the winner need not be the fastest, so every ok candidate keeps its artifact.
    constraints: Constraints = Constraints()
    # How many of the selection's ranking keep their artifacts after the sweep (the winner is
    # always one of them). The serving sweep serves the top few, so they must still exist; with
    # more than one, workers save every ok candidate (no "at least as fast" floor).
    keep_artifacts: int = 1
    # Each worker's memory limit (search.memory_watch.parse_memory_limit): past it, `oom`.
    memory_limit: float | None = DEFAULT_FRACTION


def sweep(
    planned: list[PlannedRecipe],
    workload: Workload,
    reference: Reference,
    settings: SweepSettings,
    *,
    done: dict[tuple[str, str], CandidateResult] | None = None,
    on_start: Callable[[str], None] = lambda label: None,
    on_result: OnResult = lambda result, resumed: None,
    on_more: Callable[[int], None] = lambda count: None,
    on_skip: Callable[[str, str], None] = lambda label, why: None,
    on_pruned: Callable[[str, str], None] = lambda label, why: None,
    on_eta: Callable[[float | None], None] = lambda seconds: None,
    on_job_start: Callable[[Recipe, list[str]], None] = lambda recipe, sets: None,
    on_job_end: Callable[[Recipe], None] = lambda recipe: None,
    started: float | None = None,
    artifacts_dir: str | Path | None = None,
    history: History | None = None,
    executor: Executor | None = None,
) -> list[CandidateResult]:
    """`on_start(what)`: a worker starts ("label @ bs1, bs8"). `on_more(n)`: n more candidates
    than planned will run (accuracy fallback retries). `on_skip(label, why)`: a planned recipe
    was left out because it no longer fits the time budget (resumed results are reused whatever
    the budget). `started`: time.monotonic() when the run began (what came before the sweep
    counts against the budget); default now. `on_pruned(label, why)`: work left out because it
    cannot pay (fallback retries of a quantized recipe slower than the best so far).
    `on_eta(s)`: after each proposal, the expected seconds left (Strategy.eta_s; None: unknown).
    `on_job_start(recipe, sets)` / `on_job_end(recipe)`: a worker for `recipe` at `sets` starts /
    has ended and its results were passed to on_result (the store's in-flight journal).
    `artifacts_dir`: the run's artifact directory
    (next to the store: `Store.artifacts_dir(run_id)`); None: a temporary one, which the
    OptimizeResult made of these results owns (`search.run.claim_artifacts`). `history`: what
    earlier runs recorded; a failure it knows for a (recipe, input set) is reported, not rebuilt.
    `executor`: where jobs run (default: a fresh local interpreter each, search.executor).
    Raises HarnessError when the eager control fails against its own reference."""
    from hone.search.run import discard_temporary, temporary_artifacts

    done = done or {}
    history = history or History()
    results: list[CandidateResult] = []
    started = time.monotonic() if started is None else started
    budget = TimeBudget(None if settings.time_budget_s is None else started + settings.time_budget_s,
                        known_cost=lambda recipe, n: known_cost_s(recipe, history, n))
    sets = len(workload.input_sets)
    artifacts = Path(artifacts_dir) if artifacts_dir is not None else temporary_artifacts()

    def pending(recipe: Recipe) -> int:
        # Sets resumed or known to fail cost no worker time.
        return sum((recipe.key, s.label) not in done and history.known(recipe, s.label) is None
                   for s in workload.input_sets)

    scratch.remove_orphaned_scratch()  # what a killed run left in the temporary directory
    with tempfile.TemporaryDirectory(prefix=scratch.prefix("run")) as tmp, \
            (contextlib.nullcontext(executor) if executor
             else SubprocessExecutor(Path(tmp), warm_start=warm_start_fits(settings.device),
                                     preload=installed_modules_of(workload.module))) as runs_on:
        baseline = next((item.recipe for item in planned if item.recipe.baseline), None)
        runner = _Runner(workload, reference, settings, done, on_start, on_result, artifacts, history,
                         runs_on, baseline, (on_job_start, on_job_end))
        strategy = Strategy(planned, budget, sets, pending=pending, ran=runner.ran, fallback=settings.fallback,
                            rank=_ranker(workload, reference), cannot_pay=runner.cannot_pay, on_skip=on_skip,
                            on_more=on_more, on_pruned=on_pruned,
                            patience=settings.patience if settings.time_budget_s is not None else 0,
                            contends=runner.contends, plateau_reason=runner.plateau_reason)
        try:
            while (proposal := strategy.ask()) is not None:
                ran = runner.run(proposal.recipe, proposal.unavailable, stop_at_failure=proposal.refinement)
                results.extend(ran)
                if proposal.recipe.baseline:
                    check_control(ran)  # a control rejected by its own reference: stop here
                strategy.tell(proposal, ran)
                on_eta(strategy.eta_s())
        except HarnessError:  # the run is over: nothing can be selected
            if not discard_temporary(artifacts):
                shutil.rmtree(artifacts, ignore_errors=True)
            raise
    if not keep_selected(results, artifacts, history.incumbent(), settings.constraints,
                         settings.keep_artifacts) and artifacts_dir is None:
        discard_temporary(artifacts)  # nothing to keep: no result will claim it
    return results


def keep_selected(results: list[CandidateResult], artifacts: Path, incumbent: dict[str, Any] | None = None,
                  constraints: Constraints | None = None, top: int = 1) -> bool:
    """Delete every artifact under `artifacts` but those of the selected recipe and of the next
    `top - 1` in the selection's ranking (and leftovers of workers that died while saving).
    True when one of them has an artifact there."""
    keys = kept_keys(select(results, incumbent, constraints), top)
    keep = {Path(r.artifact["dir"]).resolve() for r in results
            if r.recipe.key in keys and r.artifact and r.artifact.get("dir")}
    if not artifacts.is_dir():
        return False
    for job_dir in artifacts.iterdir():
        builds = [job_dir] if not job_dir.is_dir() else list(job_dir.iterdir())
        for build in builds:
            if build.resolve() in keep:
                continue
            if build.is_dir():
                shutil.rmtree(build, ignore_errors=True)
            else:
                build.unlink(missing_ok=True)
        if job_dir.is_dir() and not any(job_dir.iterdir()):
            job_dir.rmdir()
    return any(p.is_dir() for p in keep)


def kept_keys(selection, top: int) -> list[str]:
    """The recipe keys whose artifacts a run keeps: the winner first, then the ranking's next."""
    if selection.best is None:
        return []
    keys = [selection.best.key]
    for ranked in selection.ranking:
        if len(keys) >= top:
            break
        if ranked.recipe.key not in keys:
            keys.append(ranked.recipe.key)
    return keys


class _Runner:
    """Runs one recipe at the input sets it still lacks, in one worker, each result stored (via
    on_result) once the worker is done; resumed results are reused, not run again."""

    def __init__(self, workload, reference, settings, done, on_start, on_result, artifacts: Path,
                 history: History, executor: Executor, baseline: Recipe | None = None,
                 journal: tuple[Callable[[Recipe, list[str]], None], Callable[[Recipe], None]] | None = None):
        self.workload, self.reference, self.settings, self.done = workload, reference, settings, done
        self.baseline = baseline if settings.paired else None  # what confirmed candidates are paired with
        self.history, self.executor = history, executor
        self.on_start, self.on_result = on_start, on_result
        self.on_job_start, self.on_job_end = journal or (lambda recipe, sets: None, lambda recipe: None)
        self.artifacts = artifacts
        self.payload: bytes | None = None
        self.main_path: str | None = None
        self.sys_path = [p for p in sys.path if p]
        self.labels = [s.label for s in workload.input_sets]
        # Every result seen so far (resumed ones included): what decides whether a worker saves.
        self.seen: dict[tuple[str, str], CandidateResult] = dict(done)
        self.last_worked = False  # whether the last run() started a worker (the plateau counts only those)

    def run(self, recipe: Recipe, unavailable: str | None = None, stop_at_failure: bool = False) -> list[CandidateResult]:
        """`stop_at_failure`: skip the remaining input sets once one fails (fallback retries)."""
        resumed = {s: self.done[(recipe.key, s)] for s in self.labels if (recipe.key, s) in self.done}
        for result in resumed.values():
            self.on_result(result, True)
        todo = [s for s in self.labels if s not in resumed]
        if stop_at_failure and any(not r.ok for r in resumed.values()):
            todo = []
        new: list[CandidateResult] = []
        self.last_worked = False
        if todo:
            self.on_start(f"{recipe.label} @ {', '.join(todo)}")
            if unavailable:
                new = [CandidateResult(recipe, s, Status.UNSUPPORTED, unavailable) for s in todo]
            else:
                # A failure an earlier run measured under the same conditions is reported, not
                # rebuilt; the baseline always runs (everything is measured against it).
                history = History() if recipe.baseline else self.history
                new = [known.result(recipe, s) for s in todo if (known := history.known(recipe, s))]
                rest = [s for s in todo if history.known(recipe, s) is None]
                if rest and not (stop_at_failure and new):
                    self.last_worked = True
                    self.on_job_start(recipe, rest)  # in flight until recorded: a kill leaves the mark
                    new += self._run_job(recipe, rest, list(resumed.values()) + new, stop_at_failure)
            for result in new:
                self.seen[(recipe.key, result.input_set)] = result
                self.on_result(result, False)
            if self.last_worked:
                self.on_job_end(recipe)
        by_set = {**resumed, **{r.input_set: r for r in new}}
        return [by_set[s] for s in self.labels if s in by_set]

    def _baseline_p50(self) -> dict[str, float]:
        return {r.input_set: r.measurement.p50 for r in self.seen.values()
                if r.recipe.baseline and r.ok and r.measurement is not None and r.measurement.n}

    def ran(self, recipe: Recipe) -> bool:
        """Whether this sweep already has a result of `recipe` at every input set."""
        return all((recipe.key, s) in self.seen for s in self.labels)

    def cannot_pay(self, attempt: list[CandidateResult]) -> str | None:
        """Why no accuracy retry of this quantized attempt can win: its screening time (taken
        although it missed the budget) is clearly slower than the best so far at every set it
        was timed, and keeping layers in float only adds time. None: it may pay, or unknown."""
        best = self._best_p50()
        timed = [(r.input_set, r.screen_p50_s, best[r.input_set]) for r in attempt
                 if r.screen_p50_s is not None and r.input_set in best]
        if not timed or any(p50 <= b * (1 + SCREEN_MARGIN) for _, p50, b in timed):
            return None
        label, p50, b = timed[0]
        return (f"cannot beat the best so far: the last attempt ran {p50 * 1e3:.3g} ms at {label} against "
                f"{b * 1e3:.3g} ms (more than {SCREEN_MARGIN:.0%} slower), and layers kept in float only add time")

    def contends(self, recipe: Recipe, results: list[CandidateResult]) -> bool | None:
        """Whether the candidate just run came within SCREEN_MARGIN of the best geometric-mean
        speedup of the others so far (the first one always does). False when it failed at a set;
        None when no worker ran for it (it cost nothing, so it says nothing about a plateau)."""
        if not self.last_worked:
            return None
        mine = self._speedup(results)
        if mine is None:
            return False
        leader = self.leader(excluding=recipe.key)
        return leader is None or mine >= leader[1] / (1 + SCREEN_MARGIN)

    def leader(self, excluding: str | None = None) -> tuple[str, float] | None:
        """The recipe with the best geometric-mean speedup so far (ok at every set), and that speedup."""
        by_recipe: dict[str, list[CandidateResult]] = {}
        for r in self.seen.values():
            if not r.recipe.baseline and r.recipe.key != excluding:
                by_recipe.setdefault(r.recipe.key, []).append(r)
        speedups = [(rs[0].recipe.label, gm) for rs in by_recipe.values() if (gm := self._speedup(rs)) is not None]
        return max(speedups, key=lambda found: found[1], default=None)

    def _speedup(self, results: list[CandidateResult], baseline_p50: dict[str, float] | None = None) -> float | None:
        """One recipe's geometric-mean speedup (paired where it was); None unless ok at every set."""
        if len(results) != len(self.labels) or not all(r.ok and r.measurement is not None for r in results):
            return None
        baseline = self._baseline_p50() if baseline_p50 is None else baseline_p50
        return geomean_speedup(baseline, {r.input_set: r.measurement.p50 for r in results},  # type: ignore[union-attr]
                               {r.input_set: r.paired.speedup for r in results if r.paired is not None})

    def plateau_reason(self, patience: int) -> str:
        leader = self.leader()
        best = f"{leader[0]}, {leader[1]:.2f}x" if leader else "none ok"
        return (f"the search reached a plateau: the last {patience} candidates built were each more than "
                f"{SCREEN_MARGIN:.0%} slower than the best so far ({best}) or failed (--patience 0 runs on until the "
                "time budget is spent)")

    def _best_p50(self) -> dict[str, float]:
        """The fastest p50 of any recipe ok so far, per input set (what screening compares with)."""
        best: dict[str, float] = {}
        for r in self.seen.values():
            if r.ok and r.measurement is not None and r.measurement.n:
                best[r.input_set] = min(best.get(r.input_set, float("inf")), r.measurement.p50)
        return best

    def _front(self) -> dict[str, list[list]]:
        """The Pareto front of every ok candidate so far, per input set (search.pareto)."""
        points: dict[str, list[Point]] = {}
        for r in self.seen.values():
            if r.ok and r.measurement is not None and r.measurement.n and r.verdict is not None:
                points.setdefault(r.input_set, []).append(
                    Point(r.recipe.label, r.measurement.p50, r.verdict.error, r.measurement.peak_rss_bytes or 0))
        return {label: [p.to_list() for p in front(found)] for label, found in points.items()}

    def _best_speedup(self, baseline_p50: dict[str, float]) -> float | None:
        """The best geometric-mean speedup of a recipe ok at every set whose artifact exists (or
        that recorded why it has none): a later recipe saves only if it is at least as fast."""
        by_recipe: dict[str, list[CandidateResult]] = {}
        for r in self.seen.values():
            by_recipe.setdefault(r.recipe.key, []).append(r)
        best = None
        for rs in by_recipe.values():
            if not all(r.artifact and ("unsaved" in r.artifact or Path(r.artifact["dir"]).is_dir()) for r in rs):
                continue
            if any(r.stage == "screened" for r in rs):
                continue  # never the winner (select ranks it after those measured in full)
            gm = self._speedup(rs, baseline_p50)
            if gm is not None and (best is None or gm > best):
                best = gm
        return best

    def _run_job(self, recipe: Recipe, input_sets: list[str], resumed: list[CandidateResult],
                 stop_at_failure: bool) -> list[CandidateResult]:
        if self.payload is None:  # made once, only when something has to run
            self.main_path = _main_path(self.workload.module)  # the same for every candidate
            self.payload = _bundle_bytes(self.workload, self.reference)
        name = f"{safe_name(recipe.label)}-{recipe.key[:8]}"  # the same recipe in a resumed run: the same folder
        baseline_p50 = self._baseline_p50()
        # A recipe that already failed at a resumed set cannot win: it saves nothing.
        can_win = all(r.ok and r.measurement is not None for r in resumed)
        pair = None if recipe.baseline else self.baseline
        job = Job(
            recipe=recipe.to_dict(),
            step_paths=step_paths(recipe),
            input_sets=input_sets,
            threads=self.settings.threads,
            device=self.settings.device,
            accuracy_budget=self.settings.accuracy_budget.value,
            accuracy_budget_relative=self.settings.accuracy_budget.relative,
            measure=dataclasses.asdict(self.settings.measure),
            sys_path=self.sys_path,
            main_path=self.main_path,
            user_files=self.workload.user_files,
            stop_at_failure=stop_at_failure,
            memory_limit=self.settings.memory_limit,
            artifact_dir=str(self.artifacts / name) if can_win else None,
            baseline_p50=baseline_p50,
            best_speedup=(self._best_speedup(baseline_p50)
                          if self.settings.constraints.default and self.settings.keep_artifacts == 1 else None),
            best_p50={} if recipe.baseline else self._best_p50(),
            front={} if recipe.baseline else self._front(),
            # A quantized or pruned attempt that misses the budget is timed anyway: retries depend on it.
            screen_failures=bool(self.settings.fallback.attempts) and refinable(recipe),
            done_p50={r.input_set: r.measurement.p50 for r in resumed if r.measurement is not None},
            prebuilt=self.history.winner_artifacts if recipe.key == self.history.winner else {},
            pair_recipe=None if pair is None else pair.to_dict(),
            pair_step_paths=[] if pair is None else step_paths(pair),
        )
        return self.executor.run(recipe, job, self.payload, self.settings.timeout_s)


def _ranker(workload: Workload, reference: Reference):
    """Layer sensitivity per quantization scheme, computed on first need and reused."""
    cache: dict = {}

    def rank(quant_pass: QuantizationPass) -> list[LayerSensitivity]:
        from hone.search.exclusive import timing_slot

        key = (quant_pass.scheme(), quant_pass.layer_types)
        if key not in cache:
            samples, _ = workload.calibration_samples(CALIBRATION_SAMPLES)
            # Heavy work in the parent: not beside a candidate timed on this machine (a Ray task).
            with timing_slot(f"layer sensitivity of {workload.name}"):
                cache[key] = rank_layers(
                    workload.module, samples, workload.input_names, reference.output_names, *key
                )
        return cache[key]

    return rank


def _bundle_bytes(workload: Workload, reference: Reference) -> bytes:
    bundle = Bundle(
        module=workload.module,
        input_names=workload.input_names,
        output_names=reference.output_names,
        inputs={s.label: s.as_args() for s in workload.input_sets},
        reference=reference.outputs,
        extra_atol=reference.extra_atol,
        eval=workload.eval,
        eval_reference=reference.eval_outputs,
        reference_score=reference.score,
        user_files=workload.user_files,
        calibration=workload.calibration_samples(CALIBRATION_SAMPLES)[0],
        train=workload.train,
        batch_axes=reference.batch_axes,
    )
    try:
        return bundle.to_bytes()
    except Exception as exc:  # pickling: lambdas, local classes, open handles
        raise InputError(
            f"the model cannot be sent to a worker process ({type(exc).__name__}: {exc})",
            hint="hone runs each candidate in a fresh process; define the model class at module level in a .py file",
        ) from exc


def _main_path(module: torch.nn.Module) -> str | None:
    """The user's script, when a class of the model lives in __main__ (workers must import it)."""
    if not any(type(m).__module__ == "__main__" for m in module.modules()):
        return None
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        raise InputError(
            "the model's class is defined in an interactive session, which a worker process cannot import",
            hint="define the model class in a .py file and import it",
        )
    return str(Path(path).resolve())
