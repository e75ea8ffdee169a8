"""sweep(): every planned recipe at every input set, each in its own worker, each result stored
the moment it exists. The sweep always finishes; resumed candidates are not run again."""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from hone.bench.measure import MeasureSettings
from hone.errors import InputError
from hone.models.workload import Workload
from hone.search.build import step_paths
from hone.search.job import Bundle, Job
from hone.search.planner import PlannedRecipe
from hone.search.result import CandidateResult, Status
from hone.search.worker import run_candidate
from hone.validate.reference import Reference

OnResult = Callable[[CandidateResult, bool], None]
CALIBRATION_SAMPLES = 128  # enough for MinMax/percentile scales of small models; configurable later  # (result, was it resumed from the store)


@dataclasses.dataclass(frozen=True)
class SweepSettings:
    device: str
    threads: int
    timeout_s: float
    accuracy_budget: float
    measure: MeasureSettings = MeasureSettings()


def sweep(
    planned: list[PlannedRecipe],
    workload: Workload,
    reference: Reference,
    settings: SweepSettings,
    *,
    done: dict[tuple[str, str], CandidateResult] | None = None,
    on_start: Callable[[str], None] = lambda label: None,
    on_result: OnResult = lambda result, resumed: None,
) -> list[CandidateResult]:
    done = done or {}
    results: list[CandidateResult] = []
    with tempfile.TemporaryDirectory(prefix="hone-run-") as tmp:
        workdir = Path(tmp)
        bundle_path: Path | None = None
        main_path: str | None = None
        sys_path = [p for p in sys.path if p]
        for i, item in enumerate(planned):
            recipe = item.recipe
            for input_set in workload.input_sets:
                previous = done.get((recipe.key, input_set.label))
                if previous is not None:
                    results.append(previous)
                    on_result(previous, True)
                    continue
                on_start(f"{recipe.label} @ {input_set.label}")
                if item.unavailable:
                    result = CandidateResult(recipe, input_set.label, Status.UNSUPPORTED, item.unavailable)
                else:
                    if bundle_path is None:  # written once, only when something has to run
                        bundle_path = workdir / "bundle.pt"
                        main_path = _main_path(workload.module)  # the same for every candidate
                        _write_bundle(bundle_path, workload, reference)
                    job_dir = workdir / f"{i:02d}-{recipe.label}-{input_set.label}"
                    job = Job(
                        recipe=recipe.to_dict(),
                        step_paths=step_paths(recipe),
                        input_set=input_set.label,
                        bundle_path=str(bundle_path),
                        workdir=str(job_dir / "work"),
                        result_path=str(job_dir / "result.json"),
                        threads=settings.threads,
                        device=settings.device,
                        accuracy_budget=settings.accuracy_budget,
                        measure=dataclasses.asdict(settings.measure),
                        sys_path=sys_path,
                        main_path=main_path,
                        user_files=workload.user_files,
                    )
                    result = run_candidate(recipe, job, job_dir, settings.timeout_s)
                results.append(result)
                on_result(result, False)
    return results


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
