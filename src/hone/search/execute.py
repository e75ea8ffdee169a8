"""Inside the worker: build, first call, validate, then (only if valid) measure."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from hone.bench.measure import measure
from hone.bench.memory import RssSampler, device_peak_bytes, reset_device_peak
from hone.bench.timers import timer_for
from hone.plugin import BuildContext
from hone.search.build import _load, build_recipe
from hone.search.job import Bundle, Job
from hone.search.recipe import Recipe, Step
from hone.validate.check import check_metric, check_tensors, eval_outputs, verdict_of


def recipe_from_job(job: Job) -> Recipe:
    """Rebuild the recipe through the step paths the parent resolved (no registry lookup), so
    plugins from outside the hone package (a test's, a user's) work in the worker too."""
    data = job.recipe
    steps = [*data["passes"], data["runtime"]]
    built = [Step(d["name"], _load(p).Config.from_dict(d["config"])) for d, p in zip(steps, job.step_paths)]
    return Recipe(
        data["label"], tuple(built[:-1]), built[-1], data.get("origin", ""), data.get("compute_dtype", "float32"),
        data.get("cost", 1.0),
    )


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def execute(job: Job, bundle: Bundle, stage: Callable[[str], None]) -> dict[str, Any]:
    with RssSampler() as memory:
        result = _execute(job, bundle, stage)
    if "measurement" in result:
        result["measurement"]["peak_rss_bytes"] = memory.peak_bytes
    return result


def _execute(job: Job, bundle: Bundle, stage: Callable[[str], None]) -> dict[str, Any]:
    recipe = recipe_from_job(job)
    inputs = bundle.inputs[job.input_set]
    device = job.device
    if device != "cpu":
        inputs = tuple(t.to(device) for t in inputs)
    ctx = BuildContext(
        inputs, bundle.input_names, bundle.output_names, _workdir(job), job.threads, device, bundle.calibration,
        bundle.train, bundle.batch_axes,
    )
    reset_device_peak(device)

    stage("build")
    runner, artifact, build_s = build_recipe(recipe, bundle.module, ctx, job.step_paths)

    stage("first call")
    start = time.perf_counter()
    outputs = runner(*inputs)
    _sync(device)
    first_call_s = time.perf_counter() - start

    stage("validate")
    compute_dtype = runner.compute_dtype or artifact.compute_dtype
    checks = check_tensors(
        outputs, bundle.reference[job.input_set], bundle.output_names, compute_dtype,
        bundle.extra_atol.get(job.input_set),
    )
    metric = None
    if bundle.eval is not None and bundle.eval_reference is not None:
        batch_size = int(inputs[0].shape[0])
        on_device = lambda *xs: runner(*(x.to(device) for x in xs))  # noqa: E731 - eval data lives on CPU
        produced = eval_outputs(on_device, bundle.eval, batch_size, bundle.output_names, bundle.batch_axes)
        metric = check_metric(
            produced, bundle.eval_reference, bundle.eval, bundle.reference_score, job.budget, bundle.batch_axes
        )
    verdict = verdict_of(checks, metric, compute_dtype)
    info = runner.info()
    if not verdict.passed:
        return {"status": "wrong_answer", "reason": verdict.reason, "verdict": verdict.to_dict(), "runner_info": info}

    stage("measure")
    measurement = measure(
        lambda: runner(*inputs),
        timer_for(device),
        batch_size=int(inputs[0].shape[0]),
        threads=job.threads,
        settings=job.measure_settings,
        build_s=build_s,
        first_call_s=first_call_s,
    )
    measurement = dataclasses.replace(measurement, peak_device_bytes=device_peak_bytes(device))
    return {
        "status": "ok",
        "reason": verdict.reason,
        "verdict": verdict.to_dict(),
        "measurement": measurement.to_dict(),
        "runner_info": info,
    }


def _workdir(job: Job):
    from pathlib import Path

    path = Path(job.workdir)
    path.mkdir(parents=True, exist_ok=True)
    return path
