"""Inside the worker: one recipe at every input set of its job, in order.

At each set: reuse the build when its runner serves the set's inputs (`Runner.serves`), else
build (again) for that set; first call, validate, and only if valid measure. The result file
is rewritten after each set, so a crash or timeout at a later set keeps the earlier ones.

At the end the worker saves its builds' artifacts (`Runner.save` + manifest, hone.export)
into the job's artifact directory when this recipe could be the winner: it is the baseline, or
it is ok at every set and its geometric-mean speedup over eager is at least the best so far.
A build that is replaced by a rebuild is saved before it is dropped (while the candidate is
still ok everywhere) and deleted again if the recipe turns out not worth keeping.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hone.bench.measure import MeasureSettings, measure
from hone.bench.measurement import Measurement
from hone.bench.memory import RssSampler, device_peak_bytes, reset_device_peak
from hone.bench.paired import paired
from hone.bench.timers import timer_for
from hone.plugin import Artifact, BuildContext
from hone.runtimes.base import Runner
from hone.search._child import Stage, failure
from hone.search.build import _load, build_recipe
from hone.search.job import Bundle, Job
from hone.search.pareto import Point, dominated_by
from hone.search.recipe import Recipe, Step
from hone.search.select import geomean_speedup
from hone.validate.check import check_metric, check_tensors, eval_outputs, verdict_of

SPEEDUP_SLACK = 1e-9  # the parent's best and this worker's geomean are the same floats, summed alike
# A screened candidate slower than the best so far by more than this is not timed in full: wider
# than the run-to-run drift of these machines (about 20 %), so a contender is never screened out
# by noise; the screening measurement stays its figure.
SCREEN_MARGIN = 0.25
# Calls a screening takes at least: its p10 is then its fastest call, so a screen-out needs even
# that beyond the margin. Fewer than a full measurement's ten: on a slow model (GPT-2 at bs8,
# 0.7 s a call) ten calls made screening as long as the full measurement.
SCREEN_MIN_SAMPLES = 5


def screening(full: MeasureSettings) -> MeasureSettings:
    """A short measurement: a quarter of the full one's time caps, at most 1 s of timing."""
    return dataclasses.replace(full, max_time_s=min(1.0, full.max_time_s / 4), warmup_max_s=min(0.5, full.warmup_max_s / 4),
                               min_time_s=min(0.25, full.min_time_s), min_samples=min(SCREEN_MIN_SAMPLES, full.min_samples))


def recipe_from_job(job: Job) -> Recipe:
    """Rebuild the recipe through the step paths the parent resolved (no registry lookup), so
    plugins from outside the hone package (a test's, a user's) work in the worker too."""
    return _recipe_from(job.recipe, job.step_paths)


def _recipe_from(data: dict[str, Any], paths: list[str]) -> Recipe:
    steps = [*data["passes"], data["runtime"]]
    built = [Step(d["name"], _load(p).Config.from_dict(d["config"])) for d, p in zip(steps, paths)]
    return Recipe(
        label=data["label"],
        passes=tuple(built[:-1]),
        runtime=built[-1],
        origin=data.get("origin", ""),
        compute_dtype=data.get("compute_dtype", "float32"),
        cost=data.get("cost", 1.0),
        baseline=data.get("baseline", False),
    )


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _reuse_note(failed: dict[str, Any], label: str) -> str:
    return (f"the build for {failed['built_for']} claimed to serve {label} but failed there "
            f"({failed['reason'][:120]}); rebuilt for {label}")


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]", "_", text)[:80]


@dataclasses.dataclass
class _Build:
    index: int
    built_for: str
    runner: Runner
    artifact: Artifact
    build_s: float
    served: list[str] = dataclasses.field(default_factory=list)
    outputs: tuple | None = None  # its outputs for the inputs it was built for (the manifest's)
    checks: list[dict[str, Any]] | None = None  # the verdict's per-output checks there
    saved: dict[str, Any] | None = None  # its artifact record once saved
    loaded_from: dict[str, str] | None = None  # an earlier run's saved artifact it was loaded from

    def record(self, reused: bool) -> dict[str, Any]:
        found = {"index": self.index, "built_for": self.built_for, "build_s": self.build_s, "reused": reused}
        if self.loaded_from is not None:
            found["loaded_from_run"] = int(self.loaded_from["run"])
        return found


class Execution:
    """One job's sets, run in order in this process. `result["sets"]` fills in as they finish;
    `write()` persists `result` (the child rewrites its result file atomically)."""

    def __init__(self, job: Job, bundle: Bundle, stage: Stage, result: dict[str, Any],
                 write: Callable[[], None], started: float, fresh_module: Callable[[], Any] | None = None):
        self.job, self.bundle, self.stage, self.result, self.write = job, bundle, stage, result, write
        self.recipe = recipe_from_job(job)
        self.device = job.device
        self.current: _Build | None = None
        self.retired: list[_Build] = []
        self.builds = 0
        self.failed_build: dict[str, Any] | None = None
        # Paired timing: eager is built from a fresh copy of the model (passes may have changed the
        # bundle's), after the candidate's memory was sampled, and dropped before the next set.
        self.pair_recipe = _recipe_from(job.pair_recipe, job.pair_step_paths) if job.pair_recipe else None
        self.fresh_module = fresh_module
        self.notes: list[str] = []  # what happened to builds, for the next set's summary
        self.memory: RssSampler | None = None  # the current set's sampler (screening reads the peak so far)
        self.mark = started  # the first set's wall time includes the worker's start and load
        result.setdefault("sets", {})

    # -- the sets --------------------------------------------------------------------------

    def run(self) -> None:
        self.precision = pin_precision(self.recipe.compute_dtype)
        sets = self.result["sets"]
        for label in self.job.input_sets:
            entry = self._run_set(label)
            now = time.perf_counter()
            entry["wall_s"] = now - self.mark
            entry["stages_s"] = self.stage.take()
            self.mark = now
            sets[label] = entry
            self.write()
            if self.job.stop_at_failure and entry["status"] != "ok":
                break
        self._finish()

    def _inputs(self, label: str) -> tuple:
        inputs = self.bundle.inputs[label]
        return inputs if self.device == "cpu" else tuple(t.to(self.device) for t in inputs)

    def _run_set(self, label: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"status": "crashed", "reason": "", "build": None}
        inputs = self._inputs(label)
        reuse_failed: dict[str, Any] | None = None
        try:
            with RssSampler() as memory:
                self.memory = memory
                reset_device_peak(self.device)
                build, reused = self._build_for(label, inputs)
                entry["build"] = build.record(reused)
                if reused:
                    outcome = self._attempt(label, inputs, build)
                    if outcome["status"] != "ok" and self._served_ok(build, label):
                        # The runner said it serves these inputs, and at them it failed where it
                        # had passed before (a program specialised to its first shape, a trace that
                        # does not generalise): the set gets the build of its own that reuse saved.
                        reuse_failed = {"index": build.index, "built_for": build.built_for, "reason": outcome["reason"]}
                        build.served.remove(label)
                        self._retire(build)
                        entry["build"] = None
                        build, _ = self._build_for(label, inputs)
                        entry["build"] = {**build.record(False), "reuse_failed": reuse_failed}
                        outcome = self._validate_and_measure(label, inputs, build)
                        outcome["summary"] = [*outcome["summary"], _reuse_note(reuse_failed, label)]
                else:
                    outcome = self._validate_and_measure(label, inputs, build)
                entry.update(outcome)
            if "measurement" in entry:
                entry["measurement"]["peak_rss_bytes"] = memory.peak_bytes
            if entry["status"] == "ok" and entry.get("stage") == "confirmed":
                found = self._paired(label, inputs, build.runner)
                if isinstance(found, str):
                    entry["summary"] = [*entry.get("summary", []), found]
                elif found is not None:
                    entry["paired"] = found
        except BaseException as exc:  # noqa: BLE001 - every failure must become a result
            entry.update(failure(exc, self.stage_now()))
            if entry["build"] is None:
                entry["build"], self.failed_build = self.failed_build, None
                if entry["build"] is not None and reuse_failed is not None:
                    entry["build"]["reuse_failed"] = reuse_failed
            self._drop_current()  # a build that raised (or was mid-call) is not trusted at the next set
        return entry

    def _served_ok(self, build: _Build, label: str) -> bool:
        sets = self.result["sets"]
        return all(sets[s]["status"] == "ok" for s in build.served if s != label and s in sets)

    def _attempt(self, label: str, inputs: tuple, build: _Build) -> dict[str, Any]:
        """A reused build at a new set: what it came to, a raised error included."""
        try:
            return self._validate_and_measure(label, inputs, build)
        except Exception as exc:  # noqa: BLE001 - judged by the caller, which may rebuild
            return failure(exc, self.stage_now())

    def stage_now(self) -> str:
        return getattr(self.stage, "now", "run")

    def _build_for(self, label: str, inputs: tuple) -> tuple[_Build, bool]:
        if self.current is not None and self.current.runner.serves(inputs):
            self.current.served.append(label)
            return self.current, True
        if self.current is not None:
            self._retire(self.current)
        self.stage("build")
        index = self.builds
        self.builds += 1
        loaded = self._load_prebuilt(label, index)
        if loaded is not None:
            self.current = loaded
            return loaded, False
        ctx = self._context(inputs, f"build{index}")
        start = time.perf_counter()
        try:
            runner, artifact, build_s = build_recipe(self.recipe, self.bundle.module, ctx, self.job.step_paths)
        except BaseException:
            # Every build is recorded, a failed one too (its time went somewhere).
            self.failed_build = {"index": index, "built_for": label, "build_s": time.perf_counter() - start,
                                 "reused": False, "failed": True}
            raise
        self.current = _Build(index, label, runner, artifact, build_s, [label])
        return self.current, False

    def _load_prebuilt(self, label: str, index: int) -> _Build | None:
        """The artifact an earlier run saved for this set, loaded and checked against its own
        recorded outputs (export.load), so a repeat run re-times the winner without building it
        again. None when there is none or it does not load: then it is built as usual."""
        entry = self.job.prebuilt.get(label)
        if not entry or not Path(entry["dir"]).is_dir():
            return None
        from hone import export
        from hone.plugin import first_line

        start = time.perf_counter()
        try:
            runner = export.load(entry["dir"], threads=self.job.threads, device=self.device, sha256=entry["sha256"])
        except Exception as exc:  # noqa: BLE001 - a stale artifact costs the shortcut, not the candidate
            self.notes.append(f"the artifact run {entry['run']} saved for {label} did not load ({first_line(exc)}): built again")
            return None
        artifact = Artifact("loaded", compute_dtype=self.recipe.compute_dtype, approximate=self.recipe.approximates)
        self.notes.append(f"loaded the artifact run {entry['run']} saved for {label} (checked against its recorded outputs), "
                          "not built again")
        return _Build(index, label, runner, artifact, time.perf_counter() - start, [label], loaded_from=entry)

    def _context(self, inputs: tuple, name: str) -> BuildContext:
        workdir = Path(self.job.workdir) / name
        workdir.mkdir(parents=True, exist_ok=True)
        return BuildContext(
            inputs, self.bundle.input_names, self.bundle.output_names, workdir, self.job.threads, self.device,
            self.bundle.calibration, self.bundle.train, self.bundle.batch_axes,
        )

    def _paired(self, label: str, inputs: tuple, runner: Runner) -> dict[str, Any] | str | None:
        """The candidate against eager in alternating windows, here and now (bench.paired); None
        when this job does not pair, a note when eager could not run beside it."""
        if self.pair_recipe is None or self.recipe.baseline:
            return None
        self.stage("pair")
        eager = None
        try:
            module = self.fresh_module() if self.fresh_module is not None else copy.deepcopy(self.bundle.module)
            eager = build_recipe(self.pair_recipe, module, self._context(inputs, "eager"), self.job.pair_step_paths)[0]
            timer = timer_for(self.device)
            found = paired(lambda: timer.time_call(lambda: eager(*inputs)), lambda: timer.time_call(lambda: runner(*inputs)),
                           measure_s=self.job.measure_settings.max_time_s)
        except Exception as exc:  # noqa: BLE001 - the candidate's own measurement stands without it
            from hone.plugin import first_line

            return f"no paired timing at {label}: eager beside it raised {first_line(exc)}"
        finally:
            eager = None  # the copy goes before the next set is measured
            gc.collect()
        return found.to_dict()

    def _step_summaries(self, runner: Runner) -> list[str]:
        """Each pass's own lines of what it did (Pass.summary), from the notes the runner carries."""
        from hone.registry import PASSES

        return [line for step in self.recipe.passes
                for line in PASSES.get(step.name).summary(runner.step_notes.get(step.name, {}))]

    def _validate_and_measure(self, label: str, inputs: tuple, build: _Build) -> dict[str, Any]:
        runner, bundle, job = build.runner, self.bundle, self.job
        self.stage("first call")
        start = time.perf_counter()
        outputs = runner(*inputs)
        _sync(self.device)
        first_call_s = time.perf_counter() - start

        self.stage("validate")
        compute_dtype = runner.compute_dtype or build.artifact.compute_dtype
        checks = check_tensors(outputs, bundle.reference[label], bundle.output_names, compute_dtype,
                               bundle.extra_atol.get(label))
        metric = None
        if bundle.eval is not None and bundle.eval_reference is not None:
            batch_size = int(inputs[0].shape[0])
            device = self.device
            on_device = lambda *xs: runner(*(x.to(device) for x in xs))  # noqa: E731 - eval data lives on CPU
            produced = eval_outputs(on_device, bundle.eval, batch_size, bundle.output_names, bundle.batch_axes)
            metric = check_metric(produced, bundle.eval_reference, bundle.eval, bundle.reference_score, job.budget,
                                  bundle.batch_axes)
        verdict = verdict_of(checks, metric, compute_dtype, build.artifact.approximate)
        if label == build.built_for:
            build.outputs = tuple(t.detach().to("cpu") for t in outputs)
            build.checks = [c.to_dict() for c in verdict.outputs]
        del outputs
        common = {"verdict": verdict.to_dict(), "runner_info": {**runner.report(), **self.precision},
                  "summary": [*runner.summary(), *self._step_summaries(runner), *self.notes]}
        self.notes = []

        def timed(settings: MeasureSettings, resume: Measurement | None = None) -> Measurement:
            return measure(lambda: runner(*inputs), timer_for(self.device), batch_size=int(inputs[0].shape[0]),
                           threads=job.threads, settings=settings, resume=resume, build_s=build.build_s,
                           first_call_s=first_call_s)


        best = job.best_p50.get(label)
        if not verdict.passed:
            wrong = {"status": "wrong_answer", "reason": verdict.reason, **common}
            if job.screen_failures and best is not None and not verdict.broken:
                self.stage("screen")  # for the accuracy fallback only: is a retry worth it?
                wrong["screen_p50_s"] = timed(screening(job.measure_settings)).p50
            return wrong
        return self._staged(label, verdict, common, timed, best)

    def _staged(self, label: str, verdict, common: dict[str, Any], timed: Callable[..., Measurement],
                best: float | None) -> dict[str, Any]:
        """Screening first where there is a best so far to compare with; the full measurement
        only within SCREEN_MARGIN of it, continuing from the screening's calls."""
        full = self.job.measure_settings
        if best is None:
            self.stage("measure")
            return self._ok(verdict, timed(full), common, {"stage": "confirmed"})
        self.stage("screen")
        screen = timed(screening(full))
        # Out only when even its fastest tenth of calls is beyond the margin: a neighbour's burst
        # during the short screening slows part of it, and must not screen out the fastest
        # candidate (digits-cnn's onnxruntime, 4x, was once screened out and the run picked a 1.85x).
        slower_beyond_margin = screen.p10 > best * (1 + SCREEN_MARGIN)
        pareto = self._on_front(label, verdict, screen.p50) if slower_beyond_margin else None
        if pareto:
            self.stage("measure")
            return self._ok(verdict, timed(full, screen), common, {"stage": "confirmed", "stage_reason": pareto})
        if slower_beyond_margin:
            slower = screen.p50 / best - 1
            why = (f"screened out at {label}: p50 {screen.p50 * 1e3:.3g} ms is {slower:.0%} slower than the best so far "
                   f"({best * 1e3:.3g} ms), its fastest tenth of calls (p10 {screen.p10 * 1e3:.3g} ms) beyond the "
                   f"{SCREEN_MARGIN:.0%} margin; timed {sum(screen.times_s):.1f} s, not in full")
            common["summary"] = [*common["summary"], f"screened: {slower:.0%} slower than the best so far at {label}"]
            return self._ok(verdict, screen, common, {"stage": "screened", "stage_reason": why})
        earlier = next((s for s, e in self.result["sets"].items() if e.get("stage") == "screened"), None)
        if earlier is not None:
            # Selection never ranks a recipe screened out at one set among the contenders
            # (search.select): its full measurement here could not change the answer.
            why = (f"screening p50 {screen.p50 * 1e3:.3g} ms at {label}, but it was screened out at {earlier}, "
                   "which leaves it out of the contenders: not timed in full")
            return self._ok(verdict, screen, common, {"stage": "screened", "stage_reason": why})
        why = (f"screening p50 {screen.p50 * 1e3:.3g} ms (p10 {screen.p10 * 1e3:.3g} ms) within {SCREEN_MARGIN:.0%} of the "
               f"best so far ({best * 1e3:.3g} ms) at {label}: measured in full")
        self.stage("measure")
        return self._ok(verdict, timed(full, screen), common, {"stage": "confirmed", "stage_reason": why})

    def _on_front(self, label: str, verdict, p50: float) -> str | None:
        """Why a candidate slower than the margin still matters: no candidate so far is as fast,
        as close to fp32 and as small at once. None when one is (it is screened out)."""
        points = [Point.from_list(p) for p in self.job.front.get(label, [])]
        if not points:
            return None
        mine = Point(self.recipe.label, p50, verdict.error, self.memory.so_far() if self.memory is not None else 0.0)
        if dominated_by(mine, points) is not None:
            return None
        fastest = min(points, key=lambda p: p.p50_s)
        return (f"on the Pareto front at {label}: {p50 / fastest.p50_s - 1:.0%} slower than {fastest.label} in screening, "
                f"but no candidate so far is as fast, as close to fp32 (error {mine.error:.3g} against "
                f"{fastest.error:.3g}) and as small ({mine.peak_bytes / 2**20:.0f} MiB against "
                f"{fastest.peak_bytes / 2**20:.0f} MiB) at once: measured in full")

    def _ok(self, verdict, measurement: Measurement, common: dict[str, Any], stage: dict[str, Any]) -> dict[str, Any]:
        measurement = dataclasses.replace(measurement, peak_device_bytes=device_peak_bytes(self.device))
        return {"status": "ok", "reason": verdict.reason, "measurement": measurement.to_dict(), **stage, **common}

    # -- builds and their artifacts --------------------------------------------------------

    def _drop_current(self) -> None:
        self.current = None
        gc.collect()

    def _retire(self, build: _Build) -> None:
        """A build about to be replaced: saved first while the recipe may still win."""
        if self.job.artifact_dir and self._all_ok():
            self._save(build)
        self.retired.append(dataclasses.replace(build, runner=None, artifact=None, outputs=None))  # type: ignore[arg-type]
        self._drop_current()

    def _all_ok(self) -> bool:
        return all(e["status"] == "ok" for e in self.result["sets"].values())

    def worth_saving(self) -> bool:
        """The baseline, or ok at every set with a geometric-mean speedup at least the best so far."""
        job, sets = self.job, self.result["sets"]
        if not job.artifact_dir or not sets or not self._all_ok() or set(sets) != set(job.input_sets):
            return False
        if self.recipe.baseline:
            return True
        if any(e.get("stage") == "screened" for e in sets.values()):
            return False  # clearly slower than a candidate measured before it: never the winner
        p50 = {**job.done_p50, **{s: e["measurement"]["stats"]["p50_s"] for s, e in sets.items()}}
        # As selection computes it: the paired ratio where there is one.
        speedup = geomean_speedup(job.baseline_p50, p50, {s: e["paired"]["speedup"] for s, e in sets.items() if e.get("paired")})
        if speedup is None:
            return False  # no eager figure to compare with: it cannot be selected
        return job.best_speedup is None or speedup >= job.best_speedup * (1 - SPEEDUP_SLACK)

    def _finish(self) -> None:
        sets = self.result["sets"]
        builds = [*self.retired, *([self.current] if self.current is not None else [])]
        started = time.perf_counter()
        if self.worth_saving():
            self.stage("save")
            if self.current is not None and self.current.saved is None:
                self._save(self.current)
            by_index = {b.index: b.saved for b in builds}
            for entry in sets.values():
                if entry.get("build") is not None:
                    entry["artifact"] = by_index.get(entry["build"]["index"])
        else:
            for build in builds:  # speculative saves of a recipe that cannot win
                if build.saved and build.saved.get("dir"):
                    shutil.rmtree(build.saved["dir"], ignore_errors=True)
        if sets:
            last = sets[list(sets)[-1]]
            last["wall_s"] = last.get("wall_s", 0.0) + time.perf_counter() - started
        self.result["finished"] = True

    def _save(self, build: _Build) -> None:
        from hone import export
        from hone.plugin import first_line

        self.stage("save")
        target = Path(self.job.artifact_dir) / f"build{build.index}-{safe_name(build.built_for)}"  # type: ignore[arg-type]
        shutil.rmtree(target, ignore_errors=True)
        sets = self.result["sets"]
        p50 = {s: sets[s]["measurement"]["stats"]["p50_s"] for s in build.served if s in sets and "measurement" in sets[s]}
        checks = build.checks if build.checks and len(build.checks) == len(self.bundle.output_names) else None
        started = time.perf_counter()
        try:
            if build.loaded_from is not None:  # the earlier run's files, with this run's figures
                extra = {"built_for": build.built_for, "input_sets": list(build.served), "p50_s": p50,
                         "loaded_from_run": int(build.loaded_from["run"])}
                where = export.copy_artifact(build.loaded_from["dir"], target, build.loaded_from["sha256"], extra=extra)
            else:
                where = export.save(
                    build.runner, self.recipe, target,
                    input_names=self.bundle.input_names, output_names=self.bundle.output_names,
                    example_inputs=self._inputs(build.built_for), reference=self.bundle.reference[build.built_for],
                    outputs=build.outputs, checks=checks, p50_s=p50,
                    extra={"built_for": build.built_for, "input_sets": list(build.served), "build_s": build.build_s},
                )
            data = export.read_manifest(where)
            build.saved = {
                "dir": str(target), "sha256": data["sha256"], "checksums": data["checksums"], "files": data["files"],
                "input_sets": list(build.served), "save_s": time.perf_counter() - started,
            }
        except Exception as exc:  # noqa: BLE001 - a build that cannot be saved is still a measured result
            from hone.errors import Unsupported

            shutil.rmtree(target, ignore_errors=True)
            why = str(exc) if isinstance(exc, Unsupported) else f"saving raised {first_line(exc)}"
            build.saved = {"unsaved": why, "input_sets": list(build.served)}


def pin_precision(compute_dtype: str) -> dict[str, str]:
    """An fp32 candidate computes in IEEE fp32: TF32 off for CUDA matmuls and cuDNN (whose
    default is TF32), matmul precision "highest" (no reduced-precision fp32 kernels). Through the
    legacy flags: torch.export and Inductor read them, and once torch 2.13's new per-backend
    `fp32_precision` API is used, those reads raise. Returns what torch reads back, stored with
    the candidate's runner info. Other dtypes keep torch's defaults. (Runtimes with their own
    switch pin it themselves: OpenVINO's INFERENCE_PRECISION_HINT, TensorRT's TF32 flag.)"""
    import torch

    if compute_dtype != "float32":
        return {}
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    return {"cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


def execute(job: Job, bundle: Bundle, stage: Stage, result: dict[str, Any],
            write: Callable[[], None], started: float, fresh_module: Callable[[], Any] | None = None) -> None:
    """`fresh_module()`: the model as the payload holds it, untouched by this job's passes (for
    the eager build that paired timing compares with); default a deep copy of the bundle's."""
    Execution(job, bundle, stage, result, write, started, fresh_module).run()
