"""The public API. optimize() is the whole data flow of DESIGN.md, top to bottom:

    load -> probe hardware -> eager fp32 reference -> profile (where the time goes)
    -> plan (ordered and pruned by the profile's findings) -> sweep (isolated workers, each
    result stored as it lands) -> select -> OptimizeResult
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hone.errors import HarnessError, InputError
from hone.search.memory_watch import DEFAULT_FRACTION as DEFAULT_WORKER_MEMORY, parse_memory_limit  # no backend

if TYPE_CHECKING:
    import torch

    from hone.hardware import Hardware
    from hone.models.workload import EvalSet, TrainSet, Workload
    from hone.search.executor import Executor
    from hone.serve.sweep import ServeSweepSettings
    from hone.cost.pricing import Pricing
    from hone.profiler.records import Profile
    from hone.search.recipe import Recipe
    from hone.validate.verdict import AccuracyBudget
    from hone.search.run import OptimizeResult

DEFAULT_MODEL = "minilm"
DEFAULT_TIMEOUT_S = 600.0
# The whole run: the plan's order (profile, prior) decides what fits. On MiniLM (2 cores) the
# default run reaches the exhaustive run's winner in this time (docs/BENCHMARKS.md, search).
DEFAULT_TIME_BUDGET_S = 180.0
# Stop early after this many candidates in a row clearly slower than the best or failed
# (search.strategy.Plateau). Eight, not five: at five, a default run of digits-cnn ended
# without reaching its winner (onnxruntime, 4x; the profile's order varies between runs), see
# docs/ARCHITECTURE.md. At eight, digits-cnn's run found its winner and stopped at 149 s of
# 180 s; MiniLM's runs end on the budget first.
DEFAULT_PATIENCE = 8
DEFAULT_ACCURACY_BUDGET = 0.01  # absolute drop of the task metric (1 point of top-1)
# Libraries whose versions go into every run record (read from metadata, never imported).
# Every backend a recipe can run on is here: a new version of any of them may fix a failure
# or change a speed, so what the store remembers under the old one is not reused.
VERSIONED = (
    "hone", "torch", "numpy", "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu", "transformers", "tokenizers",
    "scikit-learn", "safetensors", "torchao", "openvino", "nncf", "tensorrt", "torch-tensorrt", "nvidia-modelopt",
    "apache-tvm", "intel-extension-for-pytorch",
)


def load_model(spec: str, *, batch_sizes: tuple[int, ...] | None = None, input_shapes: Any = None,
               trust_pickle: bool = False, timeout_s: float | None = None) -> "Workload":
    """A model spec ("minilm", "digits-cnn", "hf:bert", "path/to/file.py:factory") -> Workload.
    `timeout_s`: how long a factory may take to return (None: no limit)."""
    from hone.models import load_model as _load

    return _load(spec, batch_sizes=batch_sizes, input_shapes=input_shapes, trust_pickle=trust_pickle, timeout_s=timeout_s)


def probe_hardware(*, measure_peaks: bool = True, refresh: bool = False) -> "Hardware":
    from hone.hardware import probe

    return probe(measure_peaks=measure_peaks, refresh=refresh)


def profile(
    model: "str | torch.nn.Module | Workload" = DEFAULT_MODEL,
    example_inputs: Any = None,
    *,
    input_set: str | None = None,
    device: str = "cpu",
    batch_sizes: tuple[int, ...] | None = None,
    threads: int | None = None,
    scaling_max_batch: int = 16,
    trace: "str | Path | None" = None,
) -> "Profile":
    """Where the time goes, per aten op, against this machine's measured roofline, with the
    ranked advice that `optimize` plans from. Eager fp32, in this process.
    trace: also write a Chrome/Perfetto trace (torch.profiler) of a few forwards there."""
    from hone.profiler.advice import advise, findings
    from hone.profiler.profile import profile_workload

    workload = _as_workload(model, example_inputs, None, batch_sizes)
    hw = probe_hardware()
    device = _check_device(device, hw)
    if input_set is not None and input_set not in [s.label for s in workload.input_sets]:
        raise InputError(f"no input set {input_set!r}", hint=f"this model has {', '.join(s.label for s in workload.input_sets)}")
    if scaling_max_batch < 1:
        raise InputError("scaling_max_batch must be at least 1")
    result = profile_workload(
        workload, hw, input_set=input_set, threads=threads or hw.default_threads, device=device,
        scaling_max_batch=scaling_max_batch,
    )
    if device == "cpu":
        from hone.profiler.units import cpu_units, with_units

        units, why_not = cpu_units(workload, result.input_set, result.threads)
        result.ops, result.top_ops = with_units(result.ops, units), with_units(result.top_ops, units)
        if why_not:
            result.notes.append(why_not)
    result.findings = findings(result, hw)
    result.advice = advise(result, hw)
    # Only a compute roof is hard: cache-resident memory-bound ops legitimately beat DRAM bandwidth.
    if trace is not None:
        _write_trace(workload, result.input_set, Path(trace), device)
    return result


def _write_trace(workload: "Workload", label: str, path: Path, device: str) -> None:
    import torch

    from hone.models.workload import normalize_outputs
    from hone.profiler.trace import export_chrome_trace

    import copy

    # Never move the caller's module: a live model would silently end up on another device.
    module = (workload.module if device == "cpu" else copy.deepcopy(workload.module).to(device)).eval()
    inputs = {k: v.to(device) for k, v in workload.input_set(label).tensors.items()}

    def forward() -> None:
        with torch.inference_mode():
            normalize_outputs(module(**inputs))

    path.parent.mkdir(parents=True, exist_ok=True)
    export_chrome_trace(forward, path, device=device)


def list_recipes(
    model: "str | torch.nn.Module | Workload" = DEFAULT_MODEL,
    example_inputs: Any = None,
    *,
    device: str = "cpu",
    batch_sizes: tuple[int, ...] | None = None,
    stacks: Iterable[str] = (),
    input_shapes: Any = None,
    trust_pickle: bool = False,
) -> "list[Any]":
    """What this machine composes for `model`: the default plan's recipes (PlannedRecipe: the
    recipe and why it cannot run here, if it cannot), then each of `stacks` composed (an
    InputError names the step and the mismatch of one that does not). Nothing is run."""
    from hone.search.planner import PlannedRecipe, plan, unavailable_reason
    from hone.search.compose import parse

    workload = _as_workload(model, example_inputs, None, batch_sizes,
                            load=dict(input_shapes=input_shapes, trust_pickle=trust_pickle))
    hw = probe_hardware(measure_peaks=False)
    device = _check_device(device, hw)
    planned = list(plan(workload, hw, device))
    for text in stacks:
        recipe = parse(text, workload, hw, device)
        planned.append(PlannedRecipe(recipe, unavailable_reason(recipe, hw, device)))
    return planned


def optimize(
    model: "str | torch.nn.Module | Workload" = DEFAULT_MODEL,
    example_inputs: Any = None,
    *,
    eval: "EvalSet | str | Path | None" = None,
    calibration: Any = None,
    train: "TrainSet | None" = None,
    metric: Any = None,
    device: str = "cpu",
    batch_sizes: tuple[int, ...] | None = None,
    threads: int | None = None,
    accuracy_budget: "float | str | AccuracyBudget" = DEFAULT_ACCURACY_BUDGET,
    fallback_attempts: int = 3,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    worker_memory: "float | str | None" = DEFAULT_WORKER_MEMORY,
    time_budget_s: float | None = DEFAULT_TIME_BUDGET_S,
    patience: int = DEFAULT_PATIENCE,
    measure_time_s: float = 8.0,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    recipes: "Iterable[Recipe | str] | None" = None,
    store: "str | Path | None | bool" = None,
    resume: bool = False,
    progress: bool = True,
    profile_first: bool = True,
    retry_failed: bool = False,
    explore: bool = False,
    input_shapes: Any = None,
    trust_pickle: bool = False,
    objective: str = "latency",
    max_p99_ms: float | None = None,
    max_memory_mb: float | None = None,
    pricing: "Pricing | None" = None,
    executor: "Executor | str | None" = None,
    ray_address: str | None = None,
    serve_sweep: "ServeSweepSettings | bool | None" = None,
) -> "OptimizeResult":
    """Try every recipe that fits this machine on `model`; return every result and the winner.

    model: a spec string, a loaded Workload, or a live nn.Module with `example_inputs`
    (a tensor, a tuple of tensors or a dict name -> tensor; dim 0 is the batch).
    calibration: samples for quantization (same form as example_inputs, samples on dim 0), or
    a data file (.npz / .safetensors, one array per input name; hone.models.data_files); never
    the eval split. Without one, quantization calibrates on the example inputs (warned).
    eval: an EvalSet, or a data file like calibration's with class labels under "labels".
    metric: a built-in metric name (hone.validate.metrics) or a MetricFn judging the eval set:
    an eval file's (default: top1 with labels, embedding_cosine without) or the model's own.
    train: a TrainSet (samples, labels, a picklable loss step) for quantization-aware training.
    accuracy_budget: the allowed drop of the task metric: 0.01 absolute, or "1%" of fp32's score.
    fallback_attempts: retries of a quantized candidate that missed the budget, each with more
    of its most sensitive layers kept in float (0: none).
    worker_memory: each worker's memory limit: a fraction of this machine's memory (default 0.8),
    a size ("6GiB"), or None for none. A candidate whose processes pass it is `oom`, with the figure.
    time_budget_s: seconds for the whole run (None: no limit). The eager baseline runs first and
    sets the unit; a recipe starts only if its expected cost fits in what is left, so expensive
    ones (autotuning, TVM tuning) run when the profile advises them or time allows. Left-out
    recipes are reported with the arithmetic. `include` naming a recipe does not exempt it.
    patience: within a time budget, stop once this many candidates in a row were each more than
    the screening margin slower than the best so far or failed; the rest is reported as not run,
    with that reason (0: run on until the budget is spent; no budget: everything runs).
    store: the SQLite file for results (default ./hone-runs/hone.db or $HONE_DB); False: none.
    resume: continue the latest unfinished run of the same model and settings.
    include / exclude: recipe labels of the default plan to keep or leave out; an included label
    the default plan lacks is composed as a stack ("channels-last+inductor").
    recipes: exactly these recipes (plus the eager baseline): Recipe objects or stacks by name,
    e.g. ["pt2e-int8+aoti", "bf16+inductor"]; a stack that does not compose is an InputError
    naming the step and the mismatch, before any work.
    profile_first: profile eager fp32 first and let its findings order and prune the plan; with
    a store, an earlier run's profile of this model on this machine, thread count and library
    versions is reused instead (`explore` profiles again).
    retry_failed: rebuild recipes the store records as unsupported, crashed or oom for this model
    on this machine with these library versions (by default they are reported, not rebuilt).
    A store also puts the previous winner of this model on this machine first in the plan, and
    the prior learned from it orders the rest (search.prior): a recipe an earlier run of this
    model here measured clearly slower than its winner, or over the accuracy budget, with the
    same library versions, is left out with that evidence.
    explore: build those too (and retry known failures): everything the plan holds.
    input_shapes: for a model file, concrete shapes of what it leaves dynamic: {name: shape} or
    ["input_ids=1x128", ...]. trust_pickle: the explicit opt-in to load a full pickle (.pt,
    .pth, .bin); it is recorded in the run.
    objective: what "best" means among candidates that pass: "latency" (the highest geometric-mean
    speedup over the input sets), "throughput" (most samples a second at the best input set) or
    "memory" (lowest peak memory). max_p99_ms / max_memory_mb: limits every input set must meet;
    when no candidate meets them, the closest is returned as best effort, with what it misses.
    pricing: what this machine's time costs (hone.cost.Pricing: a price table row, the closest
    match, or a price per hour), for the $/1M figures and objective "cost" (the lowest $ per 1M
    inferences; without pricing it takes the closest match in the shipped table, said as such).
    executor: where candidates run: "local" (default: a fresh process each, on this machine),
    "ray" (Ray tasks on a local Ray started for the run, or on the cluster at `ray_address`), or
    an Executor (search.executor; the caller's to close). Not part of the run's identity: a run
    interrupted under one executor resumes under another.
    serve_sweep: after selection, serve the top candidates behind a real server and drive them
    with closed-loop and Poisson load over batching x processes x threads (True: the defaults of
    hone.serve.sweep.ServeSweepSettings; its p99 target defaults to `max_p99_ms`). The curves
    and the chosen configuration are in `result.run.serving` and the reports.
    """
    from hone.bench.measure import MeasureSettings
    from hone.report.progress import SweepProgress
    from hone.search.history import earlier_profile, history_facts, model_identity, read_history
    from hone.search.prior import apply_prior
    from hone.search.planner import plan
    from hone.search.run import OptimizeResult
    from hone.search.sweep import SweepSettings, sweep
    from hone.profiler.timing import threads_set
    from hone.validate.reference import compute_reference

    from hone.search.constraints import Constraints
    from hone.search.exclusive import timing_slot
    from hone.search.executor import executor_for
    from hone.search.fallback import FallbackSettings
    from hone.store.resume import open_store, start_or_resume
    from hone.validate.verdict import AccuracyBudget

    import time

    started = time.monotonic()
    budget = AccuracyBudget.parse(accuracy_budget)
    constraints = Constraints(objective, max_p99_ms, max_memory_mb)  # bad values fail before any work
    _check_options(timeout_s, measure_time_s, threads, time_budget_s)
    if patience < 0:
        raise InputError(f"patience must be 0 (off) or a positive number of candidates, not {patience}")
    fallback_settings = FallbackSettings(attempts=fallback_attempts)
    memory_limit = parse_memory_limit(worker_memory)
    serving = _serving_settings(serve_sweep, max_p99_ms)  # bad settings or a missing mosec fail before any work
    runs_on = executor_for(executor, ray_address)  # an unknown executor or a missing ray fails before any work
    name = model if isinstance(model, str) else type(model).__name__
    with SweepProgress(enabled=progress) as shown:
        shown.stage(f"loading {name}")
        # The parent's own heavy work holds this machine's timing slot (search.exclusive), as
        # every candidate does: loading, the peaks' probe, the reference and the profile would
        # otherwise share the cores with a candidate timed meanwhile (another model's Ray task
        # on this node, another hone process).
        with timing_slot(f"hone optimize {name}: loading, probing"):
            workload = _as_workload(model, example_inputs, eval, batch_sizes, calibration, train,
                                    load=dict(input_shapes=input_shapes, trust_pickle=trust_pickle, timeout_s=timeout_s),
                                    metric=metric)
            shown.stage("probing hardware")
            hw = probe_hardware()
        device = _check_device(device, hw)
        constraints = _priced(constraints, pricing, hw, device)  # stored with the run's settings
        if recipes is not None:  # a stack that does not compose fails here, before any work
            recipes = _composed(recipes, workload, hw, device)
        settings = SweepSettings(
            device=device,
            threads=threads or hw.default_threads,
            timeout_s=timeout_s,
            accuracy_budget=budget,
            measure=MeasureSettings(max_time_s=measure_time_s),
            fallback=fallback_settings,
            time_budget_s=time_budget_s,
            patience=patience,
            memory_limit=memory_limit,
            constraints=constraints,
            keep_artifacts=serving.top if serving else 1,  # the serving sweep serves the top few
        )
        shown.stage("reference: eager fp32 twice, float64 calibration")
        # At the workers' thread count: the eager control in a worker then repeats the reference's
        # arithmetic (reductions split the same way), and any difference is the harness's.
        with threads_set(settings.threads), timing_slot(f"hone optimize {name}: reference"):
            reference = compute_reference(workload, timeout_s)  # a model that cannot run its inputs stops here
        summary, earlier = None, None
        if profile_first and recipes is None:
            if not explore:
                with open_store(store, existing_only=True) as db:
                    earlier = earlier_profile(db, model_identity(workload), hw.fingerprint, device, _versions(),
                                              settings.threads)
            if earlier is not None:
                summary = {**earlier[1], "reused_from_run": earlier[0]}
            else:
                shown.stage("profiling eager fp32: where the time goes")
                with timing_slot(f"hone optimize {name}: profiling"):
                    summary = _profile_summary(_profile_for_plan(workload, hw, settings))
        planned = plan(workload, hw, device, include=include, exclude=exclude, recipes=recipes,
                       findings=_stored_findings(summary) if summary else None)
        info = _run_info(workload, reference, hw, settings, [p.recipe.label for p in planned])
        info.profile = summary
        info.pruned = dict(planned.pruned)
        # What the loader had to assume (provenance["warnings"]: a dimension given a default size) first.
        info.warnings = [*workload.provenance.get("warnings", []), *_calibration_warnings(workload, planned)]
        sets = len(workload.input_sets)
        shown.set_total(len(planned) * sets)

        with open_store(store) as db, runs_on as chosen_executor:
            run_id, done = start_or_resume(db, info, resume)
            history = read_history(db, info.model_id, info.fingerprint, device, info.versions, current_run=run_id,
                                   settings=info.settings,
                                   op_mix=(info.profile or {}).get("op_mix"))
            if retry_failed or explore:
                history.failures.clear()
            if recipes is None:  # recipes named by the caller are run as given
                apply_prior(planned, history, explore or bool(include))  # labels the user named are built
                info.pruned.update(planned.pruned)
            history.winner_first(planned)
            info.history = history_facts(history)
            info.incumbent = history.incumbent()
            try:
                results = sweep(
                    planned, workload, reference, settings,
                    done=done,
                    on_start=shown.start,
                    on_result=lambda r, resumed: (db and db.record(run_id, r), shown.finished(r, resumed)),
                    on_more=shown.add_total,
                    on_skip=lambda label, why: (info.pruned.__setitem__(label, why), shown.add_total(-sets)),
                    on_pruned=info.pruned.__setitem__,
                    on_eta=shown.set_eta,
                    on_job_start=lambda recipe, sets: db and db.start_job(run_id, recipe, sets),
                    on_job_end=lambda recipe: db and db.end_job(run_id, recipe),
                    started=started,
                    artifacts_dir=db.artifacts_dir(run_id) if db else None,  # the measured artifacts
                    history=history,
                    executor=chosen_executor,
                )
            except HarnessError as exc:
                info.warnings.append(f"harness error, run stopped: {exc.message}")
                if db:  # its results stay stored, with the reason, for `hone report`
                    db.update_info(run_id, info)
                    db.finish_run(run_id, "harness_error")
                raise
            except BaseException:
                if db:
                    db.finish_run(run_id, "interrupted")
                raise
            if db:
                db.update_info(run_id, info)  # the recipes the time budget left out
                db.finish_run(run_id, "finished")
    result = OptimizeResult.from_results(info, results)
    result.workload = workload
    if serving is not None:
        from hone.serve.after_run import serve_top

        serve_top(result, serving, store, progress)
    return result


def _serving_settings(serve_sweep: Any, max_p99_ms: float | None) -> "ServeSweepSettings | None":
    if serve_sweep is None or serve_sweep is False:
        return None  # hone.serve (and its sweep's imports) only for a run that serves
    from hone.serve.after_run import serving_settings

    return serving_settings(serve_sweep, max_p99_ms)


def _composed(recipes, workload, hw, device) -> list:
    from hone.search.compose import parse
    from hone.search.recipe import Recipe

    if isinstance(recipes, (str, Recipe)):
        recipes = [recipes]
    return [r if isinstance(r, Recipe) else parse(r, workload, hw, device) for r in recipes]


def _calibration_warnings(workload, planned) -> list[str]:
    """Quantized recipes calibrated on the example inputs: say so, loudly, in the report."""
    from hone.search.sweep import CALIBRATION_SAMPLES

    from hone.registry import PASSES

    quantized = [
        p.recipe.label for p in planned
        if not p.unavailable and any(getattr(PASSES.get(s.name), "needs_calibration", False) for s in p.recipe.passes)
    ]
    _, warning = workload.calibration_samples(CALIBRATION_SAMPLES)
    return [f"{warning} (affects {', '.join(quantized)})"] if quantized and warning else []


def _profile_for_plan(workload, hw, settings) -> "Profile | None":
    """The profile behind the plan: the largest input set in full, the smallest without the
    batch sweep, their shares averaged (profiler.across). A profiler failure costs the advice,
    never the sweep."""
    import logging

    from hone.cost.projection import set_record
    from hone.profiler.across import across_sets
    from hone.profiler.advice import advise, findings
    from hone.profiler.profile import profile_workload

    largest = max(workload.input_sets, key=lambda s: s.batch_size)
    smallest = min(workload.input_sets, key=lambda s: s.batch_size)
    try:
        found = profile_workload(
            workload, hw, input_set=largest.label, threads=settings.threads, device=settings.device,
            scaling_max_batch=largest.batch_size,
        )
        others = []
        if smallest.batch_size < largest.batch_size:
            others.append(profile_workload(
                workload, hw, input_set=smallest.label, threads=settings.threads, device=settings.device,
                scaling_max_batch=0,
            ))
        # Each set's per-op FLOPs and bytes, kept in the run: `hone cost` projects them later.
        per_set = [set_record(p, s.batch_size) for p, s in zip([found, *others], [largest, smallest])]
        found = across_sets(found, others)
        found.per_set = per_set
        found.findings = findings(found, hw)
        found.advice = advise(found, hw)
        return found
    except Exception as exc:  # noqa: BLE001 - profiling is advisory here
        logging.getLogger(__name__).warning("profiling failed, planning without advice: %s: %s", type(exc).__name__, exc)
        return None


def _stored_findings(summary: dict[str, Any]) -> list:
    """The plan's findings from a profile summary: the one just taken, or an earlier run's."""
    from hone.profiler.records import Finding

    return [Finding(f["kind"], f["share"], f["finding"], dict(f.get("units") or {})) for f in summary.get("findings", [])]


def _profile_summary(found) -> dict[str, Any] | None:
    from hone.search.prior import op_mix

    if found is None:
        return None
    return {
        "input_set": found.input_set,
        "verdict": found.verdict,
        "shares": found.shares,
        "wall_s": found.wall_s,
        "op_time_s": found.op_time_s,
        "op_mix": op_mix(found.ops),  # what the prior finds similar models by
        "findings": [{"kind": f.kind, "share": f.share, "finding": f.text, "units": f.units} for f in found.findings],
        "advice": [{"step": a.step, "rank": a.rank, "finding": a.finding, "reason": a.reason} for a in found.advice],
        "sets": found.per_set,  # per input set: batch size and per-op-type FLOPs, bytes, time (cost.projection)
    }


def _priced(constraints, pricing, hw, device):
    """The constraints with this machine's price when one is asked for (pricing, or the cost
    objective, which takes the closest match in the shipped table and says so)."""
    import dataclasses

    from hone.cost.pricing import Pricing

    if pricing is None and constraints.objective != "cost":
        return constraints
    return dataclasses.replace(constraints, price=(pricing or Pricing()).resolve(hw.to_dict(), device))


def _as_workload(model: Any, example_inputs: Any, eval: Any, batch_sizes: Any, calibration: Any = None, train: Any = None,
                 load: dict[str, Any] | None = None, metric: Any = None) -> "Workload":
    import torch

    from hone.models.data_files import attach_calibration_file, attach_eval_file, attach_metric, is_data_path
    from hone.models.workload import InputSet, Workload, name_inputs

    if isinstance(model, str):
        if example_inputs is not None:
            raise InputError("example_inputs go with a live nn.Module; a model spec brings its own inputs")
        workload = load_model(model, batch_sizes=batch_sizes, **(load or {}))
    elif isinstance(model, Workload):
        workload = model
    elif isinstance(model, torch.nn.Module):
        if example_inputs is None:
            raise InputError("a live nn.Module needs example_inputs (a tensor, a tuple of tensors, or a dict)")
        if batch_sizes is not None:
            raise InputError("batch_sizes applies to model specs; give a live module inputs of the batch size you want")
        named = name_inputs(model, example_inputs)
        batch = next(iter(named.values())).shape[0]
        workload = Workload(type(model).__name__, model.eval(), [InputSet(f"bs{batch}", named)])
    else:
        raise InputError(f"model must be a spec string or a torch.nn.Module, not {type(model).__name__}")
    if is_data_path(eval):  # a data file: read and checked here, before any work
        attach_eval_file(workload, eval, metric)
    elif eval is not None:
        workload.eval = eval
    if metric is not None and not is_data_path(eval):
        attach_metric(workload, metric)
    if is_data_path(calibration):
        attach_calibration_file(workload, calibration)
    elif calibration is not None:
        workload.calibration = name_inputs(workload.module, calibration)
        workload.calibration_description = "given by the caller"
    if train is not None:
        workload.train = train
    workload.check_data()
    return workload


def _check_options(timeout_s: float, measure_time_s: float, threads: int | None, time_budget_s: float | None) -> None:
    if timeout_s <= 0 or measure_time_s <= 0:
        raise InputError("timeouts and measuring times must be positive")
    if time_budget_s is not None and time_budget_s <= 0:
        raise InputError(f"the time budget must be positive seconds (or None for no limit), not {time_budget_s}")
    if threads is not None and threads < 1:
        raise InputError(f"threads must be at least 1, not {threads}")


def _check_device(device: str, hw: "Hardware") -> str:
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not hw.has_cuda:
            raise InputError(f"device {device!r} asked for, but this machine has no CUDA device", hint="use --device cpu")
        return device
    raise InputError(f"unknown device {device!r}", hint="cpu or cuda[:N]")


def _versions() -> dict[str, str]:
    import importlib.metadata as md
    import platform

    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return found


def _run_info(workload, reference, hw, settings, labels):
    import dataclasses

    from hone.search.history import model_identity
    from hone.search.run import RunInfo

    return RunInfo(
        model=workload.source,
        model_id=model_identity(workload),
        workload=workload.name,
        task=workload.task,
        device=settings.device,
        threads=settings.threads,
        input_sets={s.label: [str(t) for t in s.specs()] for s in workload.input_sets},
        output_names=reference.output_names,
        hardware=hw.to_dict(),
        fingerprint=hw.fingerprint,
        versions=_versions(),
        settings={**dataclasses.asdict(settings), "recipes": labels},
        eval_metric=workload.eval.metric_name if workload.eval else None,
        reference_scores={"eval": reference.score} if reference.score is not None else {},
        nondeterministic=reference.nondeterministic,
        fp32_error=reference.fp32_error,
        fp64_skipped=reference.fp64_skipped,
        output_batch_axes=reference.batch_axes_by_name,
        batch_axes_note=reference.batch_axes_note,
        provenance=dict(workload.provenance),
    )
