"""`hone verify DIR`: does an exported artifact still hold here? A deploy check for CI.

In order, each a line of the report and, when it fails, a one-line reason on stderr:

- checksums: every file against manifest.json (a tampered or corrupt file stops here: it is
  never loaded);
- outputs: loaded with its own runtime, the saved example inputs give the recorded outputs
  within the recorded tolerances (what `hone.load` checks);
- model (--model SPEC): the same outputs against that model's eager fp32 outputs on the same
  inputs, with validation's tolerance rules (compute dtype floors, widened by eager's own
  run-to-run and float64 error); advisory for quantized compute, as in a sweep;
- latency: timed with hone's measurement rules at the exported input set's batch and thread
  count, against the p50 recorded at export: slower than recorded x (1 + margin) fails. Across
  machines (another fingerprint) or thread counts it is a warning, unless --strict.

Exit 0 when everything holds, 1 when a check fails, 2 for input that is not an artifact.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Optional

import typer

from hone.cli.app import app
from hone.errors import HoneError, InputError

PASS, FAIL, WARN, SKIP = "ok", "FAIL", "warn", "skip"


@dataclasses.dataclass
class Check:
    name: str
    status: str
    detail: str


@dataclasses.dataclass
class Verification:
    directory: Path
    manifest: dict[str, Any]
    checks: list[Check] = dataclasses.field(default_factory=list)
    latency: dict[str, Any] | None = None

    def add(self, name: str, status: str, detail: str) -> None:
        self.checks.append(Check(name, status, detail))

    @property
    def holds(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": str(self.directory), "holds": self.holds, "recipe": self.manifest.get("recipe", {}).get("label"),
                "checks": [dataclasses.asdict(c) for c in self.checks], "latency": self.latency}


def verify_artifact(directory: Path, *, model: str | None, margin: float, threads: int | None, strict: bool,
                    measure_time_s: float) -> Verification:
    from hone import export
    from hone.plugin import first_line
    from hone.profiler.timing import threads_set

    manifest = export.read_manifest(directory)  # not an artifact at all: InputError, exit 2
    done = Verification(directory, manifest)
    try:
        export.verify(directory, manifest)
    except InputError as exc:
        done.add("checksums", FAIL, exc.message)
        done.add("outputs", SKIP, "not loaded: its files do not match the manifest")
        return done
    done.add("checksums", PASS, f"{len(manifest['checksums'])} files match manifest.json")
    timing = manifest.get("timing")
    run_threads = threads or (timing or {}).get("threads") or _default_threads()
    device = (timing or {}).get("device", "cpu")
    if device.startswith("cuda") and not _has_cuda():
        done.add("outputs", FAIL, f"it was measured on {device} and this machine has no CUDA device")
        return done
    with threads_set(run_threads):
        try:
            runner = export.load(directory, threads=run_threads, device=device, check=False)
            inputs, expected = export.load_examples(directory, manifest)
            inputs = tuple(t.to(device) for t in inputs)
            outputs = runner(*inputs)
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot load or run it here is a failed check
            done.add("outputs", FAIL, f"cannot be loaded and run here: {first_line(exc)}")
            return done
        _check_recorded_outputs(done, outputs, expected)
        if model is not None:
            _check_against_model(done, model, inputs, outputs, runner)
        _check_latency(done, runner, inputs, timing, run_threads, device, margin, strict, measure_time_s)
    return done


def _check_recorded_outputs(done: Verification, outputs, expected) -> None:
    from hone import export

    try:
        export.check_outputs(done.directory, done.manifest, outputs, expected)
    except HoneError as exc:
        done.add("outputs", FAIL, exc.message)
        return
    against = {spec["against"] for spec in done.manifest["outputs"]}
    what = " and ".join(sorted({"reference": "eager fp32's", "measured": "the build's own"}[a] for a in against))
    done.add("outputs", PASS, f"{len(outputs)} output(s) within the recorded tolerances of {what} outputs on the saved example inputs")


def _check_against_model(done: Verification, spec: str, inputs, outputs, runner) -> None:
    """Validation's tensor check against `spec`'s eager fp32 on the saved example inputs."""
    from hone.models import InputSet, Workload, load_model
    from hone.validate.check import check_tensors
    from hone.validate.compare import ADVISORY_DTYPES
    from hone.validate.reference import compute_reference

    manifest = done.manifest
    source = load_model(spec)
    names = manifest["input_names"]
    if list(source.input_names) != list(names):
        done.add("model", FAIL, f"{spec} takes inputs {source.input_names}, the artifact {names}")
        return
    examples = InputSet("examples", {n: t.cpu() for n, t in zip(names, inputs)})
    axes = (manifest.get("batch_axes") or {}).get("outputs") or {}
    reference = compute_reference(Workload(source.name, source.module, [examples], output_batch_axes=dict(axes)))
    if reference.output_names != manifest["output_names"]:
        done.add("model", FAIL, f"{spec} gives outputs {reference.output_names}, the artifact {manifest['output_names']}")
        return
    dtype = runner.compute_dtype or manifest["recipe"].get("compute_dtype", "float32")
    checks = check_tensors(tuple(o.cpu() for o in outputs), reference.outputs["examples"], reference.output_names, dtype,
                           reference.extra_atol["examples"])
    failed = [c for c in checks if not c.passed]
    if not failed:
        worst = max(checks, key=lambda c: c.max_abs_err / max(c.atol, 1e-30))
        done.add("model", PASS, f"within {spec}'s eager fp32 outputs (max abs err {worst.max_abs_err:.2g} on {worst.name}, "
                                f"tol {worst.atol:.2g} + {worst.rtol:.2g}*|ref|, {dtype})")
        return
    c = failed[0]
    line = (f"output {c.name!r} misses {spec}'s eager fp32 outputs: max abs err {c.max_abs_err:.3g} beyond tol "
            f"{c.atol:.2g} + {c.rtol:.2g}*|ref| ({dtype})")
    if dtype in ADVISORY_DTYPES:  # as in a sweep: quantized compute is judged by the task metric
        done.add("model", WARN, line + "; advisory for quantized compute (the task metric decides; verify does not run it)")
    else:
        done.add("model", FAIL, line)


def _check_latency(done: Verification, runner, inputs, timing: dict[str, Any] | None, threads: int, device: str,
                   margin: float, strict: bool, measure_time_s: float) -> None:
    from hone.bench.artifact import resize_batch
    from hone.bench.measure import MeasureSettings, measure
    from hone.bench.timers import timer_for
    from hone.report.console import fmt_time

    if not timing:
        done.add("latency", FAIL if strict else SKIP,
                 "not checked: the manifest records no export-time p50 with its threads and machine "
                 "(exported by an older hone, or a run's own copy); export it again with this hone")
        return
    batch = int(timing["batch_size"])
    axes = (done.manifest.get("batch_axes") or {}).get("inputs")
    if inputs and int(inputs[0].shape[0]) != batch:
        if axes is None:
            done.add("latency", FAIL if strict else SKIP, f"not checked: the examples are at another batch than the "
                                                         f"recorded p50 ({batch}) and the manifest records no batch axes")
            return
        inputs = resize_batch(inputs, batch, [axes] * len(inputs) if isinstance(axes, int) else axes)
    m = measure(lambda: runner(*inputs), timer_for(device), batch_size=batch, threads=threads,
                settings=MeasureSettings(max_time_s=measure_time_s))
    recorded = float(timing["p50_s"])
    ratio, limit = m.p50 / recorded, 1 + margin
    here = _fingerprint()
    others = []
    if timing.get("fingerprint") != here:
        others.append(f"another machine ({timing.get('cpu_name') or '?'}, fingerprint {timing.get('fingerprint')}; "
                      f"here {here})")
    if int(timing.get("threads", threads)) != threads:
        others.append(f"{timing['threads']} threads (here {threads})")
    done.latency = {"p50_s": m.p50, "recorded_p50_s": recorded, "ratio": ratio, "limit": limit, "batch_size": batch,
                    "threads": threads, "recorded_threads": timing.get("threads"), "fingerprint": here,
                    "recorded_fingerprint": timing.get("fingerprint"), "noise_warning": m.noise_warning,
                    "comparable": not others, "measurement": m.stats()}
    figure = (f"p50 {fmt_time(m.p50)}, recorded {fmt_time(recorded)} ({ratio:.2f}x; limit {limit:.2f}x) "
              f"at batch {batch}, {threads} threads")
    if m.noise_warning:
        figure += f" [{m.noise_warning}]"
    slower = ratio > limit
    if others:
        done.add("machine", FAIL if strict and slower else WARN, "recorded on " + " and ".join(others))
    if not slower:
        done.add("latency", PASS, figure)
    elif others and not strict:
        done.add("latency", WARN, f"{figure}: slower than recorded, but measured elsewhere (--strict to fail on it)")
    else:
        done.add("latency", FAIL, f"{figure}: slower than recorded x {limit:.2f}")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _fingerprint() -> str:
    from hone.hardware import probe

    return probe(measure_peaks=False).fingerprint


def _default_threads() -> int:
    from hone.hardware.probe import default_threads

    return default_threads()


def _render(done: Verification) -> None:
    manifest = done.manifest
    label = manifest.get("recipe", {}).get("label", "?")
    where = f", input set {manifest['input_set']}" if manifest.get("input_set") else ""
    typer.echo(f"hone verify {done.directory}: {label}{where}")
    width = max(len(c.name) for c in done.checks)
    for c in done.checks:
        typer.echo(f"  {c.status:<4}  {c.name:<{width}}  {c.detail}")
    failed = [c for c in done.checks if c.status == FAIL]
    typer.echo("holds" if not failed else f"does not hold: {len(failed)} check(s) failed")


@app.command()
def verify(
    directory: Path = typer.Argument(..., metavar="DIR", help="an export directory (hone optimize --export DIR)"),
    model: Optional[str] = typer.Option(None, "--model", help="also check against this model's eager fp32 outputs (a model spec)"),
    latency_margin: float = typer.Option(0.25, "--latency-margin", help="fail when p50 is slower than recorded x (1 + this)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="threads to run at (default: those recorded at export)"),
    strict: bool = typer.Option(False, "--strict", help="a latency comparison across machines or thread counts fails too"),
    measure_time: float = typer.Option(8.0, "--measure-time", help="seconds of timing at most"),
    as_json: bool = typer.Option(False, "--json", help="print the checks as JSON"),
) -> None:
    """Check an exported artifact here: checksums, outputs, and latency against the export's."""
    if latency_margin < 0:
        raise InputError(f"--latency-margin must be >= 0, got {latency_margin}", hint="0.25 allows 25 % slower")
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")
    done = verify_artifact(directory, model=model, margin=latency_margin, threads=threads, strict=strict,
                           measure_time_s=measure_time)
    if as_json:
        typer.echo(json.dumps(done.to_dict(), indent=2, default=str))
    else:
        _render(done)
    failed = [c for c in done.checks if c.status == FAIL]
    for c in failed:
        typer.echo(f"error: {c.name}: {c.detail}", err=True)
    if failed:
        raise typer.Exit(1)
