"""sweep(): every planned recipe at every input set, each in its own worker, each result stored
the moment it exists. The sweep always finishes; resumed candidates are not run again."""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from hone.bench.measure import MeasureSettings
from hone.errors import InputError
from hone.models.workload import Workload
from hone.passes.quantize import QuantizationPass
from hone.search.budget import TimeBudget
from hone.search.control import check_control
from hone.search.build import step_paths
from hone.search.fallback import FallbackSettings, fallback
from hone.search.job import Bundle, Job
from hone.search.planner import PlannedRecipe
from hone.search.recipe import Recipe
from hone.search.result import CandidateResult, Status
from hone.search.select import BASELINE_LABEL
from hone.search.worker import run_candidate
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
    started: float | None = None,
) -> list[CandidateResult]:
    """`on_more(n)`: n more candidates than planned will run (accuracy fallback retries).
    `on_skip(label, why)`: a planned recipe was left out because it no longer fits the time
    budget (resumed results are reused whatever the budget). `started`: time.monotonic() when
    the run began (what came before the sweep counts against the budget); default now.
    Raises HarnessError when the eager control fails against its own reference."""
    done = done or {}
    results: list[CandidateResult] = []
    started = time.monotonic() if started is None else started
    budget = TimeBudget(None if settings.time_budget_s is None else started + settings.time_budget_s)
    sets = len(workload.input_sets)

    def refusal(recipe: Recipe) -> str | None:
        if all((recipe.key, s.label) in done for s in workload.input_sets):
            return None
        return budget.refusal(recipe, sets)

    with tempfile.TemporaryDirectory(prefix="hone-run-") as tmp:
        runner = _Runner(workload, reference, settings, done, Path(tmp), on_start, on_result)
        rank = _ranker(workload, reference)

        def retry(recipe: Recipe) -> list[CandidateResult]:
            why = refusal(recipe)
            if why:
                on_skip(recipe.label, why)
                return []
            on_more(sets)
            return runner.run(recipe, stop_at_failure=True)

        for index, item in enumerate(planned):
            why = None if index == 0 or item.unavailable else refusal(item.recipe)  # the baseline always runs
            if why:
                on_skip(item.recipe.label, why)
                continue
            ran = runner.run(item.recipe, item.unavailable)
            results.extend(ran)
            if index == 0:
                if item.recipe.label == BASELINE_LABEL:
                    check_control(ran)  # a control rejected by its own reference: stop here
                budget.observe_baseline(ran)
            if not item.unavailable and settings.fallback.attempts:
                results.extend(fallback(item.recipe, ran, rank, retry, settings.fallback))
    return results


class _Runner:
    """Runs one recipe at every input set, each in its own worker, each result stored (via
    on_result) the moment it exists; resumed results are reused, not run again."""

    def __init__(self, workload, reference, settings, done, workdir: Path, on_start, on_result):
        self.workload, self.reference, self.settings, self.done = workload, reference, settings, done
        self.workdir, self.on_start, self.on_result = workdir, on_start, on_result
        self.bundle_path: Path | None = None
        self.main_path: str | None = None
        self.sys_path = [p for p in sys.path if p]
        self.count = 0

    def run(self, recipe: Recipe, unavailable: str | None = None, stop_at_failure: bool = False) -> list[CandidateResult]:
        """`stop_at_failure`: skip the remaining input sets once one fails (fallback retries)."""
        results = []
        for input_set in self.workload.input_sets:
            result = self.done.get((recipe.key, input_set.label))
            resumed = result is not None
            if result is None:
                self.on_start(f"{recipe.label} @ {input_set.label}")
                if unavailable:
                    result = CandidateResult(recipe, input_set.label, Status.UNSUPPORTED, unavailable)
                else:
                    result = self._run_job(recipe, input_set.label)
            results.append(result)
            self.on_result(result, resumed)
            if stop_at_failure and not result.ok:
                break
        return results

    def _run_job(self, recipe: Recipe, input_set: str) -> CandidateResult:
        if self.bundle_path is None:  # written once, only when something has to run
            self.bundle_path = self.workdir / "bundle.pt"
            self.main_path = _main_path(self.workload.module)  # the same for every candidate
            _write_bundle(self.bundle_path, self.workload, self.reference)
        self.count += 1
        job_dir = self.workdir / f"{self.count:02d}-{recipe.label}-{input_set}"
        job = Job(
            recipe=recipe.to_dict(),
            step_paths=step_paths(recipe),
            input_set=input_set,
            bundle_path=str(self.bundle_path),
            workdir=str(job_dir / "work"),
            result_path=str(job_dir / "result.json"),
            threads=self.settings.threads,
            device=self.settings.device,
            accuracy_budget=self.settings.accuracy_budget.value,
            accuracy_budget_relative=self.settings.accuracy_budget.relative,
            measure=dataclasses.asdict(self.settings.measure),
            sys_path=self.sys_path,
            main_path=self.main_path,
            user_files=self.workload.user_files,
        )
        return run_candidate(recipe, job, job_dir, self.settings.timeout_s)


def _ranker(workload: Workload, reference: Reference):
    """Layer sensitivity per quantization scheme, computed on first need and reused."""
    cache: dict = {}

    def rank(quant_pass: QuantizationPass) -> list[LayerSensitivity]:
        key = (quant_pass.scheme(), quant_pass.layer_types)
        if key not in cache:
            samples, _ = workload.calibration_samples(CALIBRATION_SAMPLES)
            cache[key] = rank_layers(
                workload.module, samples, workload.input_names, reference.output_names, *key
            )
        return cache[key]

    return rank


def _write_bundle(path: Path, workload: Workload, reference: Reference) -> None:
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
        bundle.save(path)
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
