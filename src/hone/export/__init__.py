"""Saving a built candidate as a deployable artifact, and loading it back.

    hone.export.save(runner, recipe, "out/", ...)   # the runtime's own product + manifest.json
    runner = hone.load("out/")                       # checked, loaded by the recipe's runtime

Each runtime writes its own product (`Runner.save`): an ONNX file, an OpenVINO IR, a
TorchScript archive, an AOTInductor .pt2 package, a TVM library, a TensorRT engine; eager and
torch.compile candidates save a torch.export program. Beside it, `examples.safetensors` holds
the example inputs it was built for and the outputs they must give, and `manifest.json` says
which runtime and config read it back, the input and output names and shapes, the tolerances
its outputs were validated with, the measured p50, and a sha256 of every file.

`examples.safetensors`: `input.<i>` (the example inputs, in input order), `reference.<i>` (eager
fp32's outputs for them, per output) and, for an output whose tensor check was advisory
(quantized compute, where the task metric decided), `measured.<i>`: what the build itself gave.
Each manifest output names which of the two a load must meet (`against`) within its atol/rtol.

An artifact appears whole or not at all: it is written into a hidden folder beside the target,
flushed to disk and renamed into place (`hone.atomic`), so a kill mid-export leaves the target
as it was. `load` refuses an artifact whose files do not match their checksums, and one whose outputs on
the saved example inputs miss the recorded ones by more than the recorded tolerances. It reads
only the manifest (JSON), safetensors and the runtime's own format: no pickle.

In a sweep the worker that measured a candidate saves it (`save`, into the run's artifact
directory), so what `OptimizeResult.export` copies out is the very build that was measured.
The exported copy's manifest adds the run's model, machine fingerprint and input set, and
`deploy_record`'s timing and batch axes, which `hone verify` re-measures against.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hone import scratch
from hone.atomic import atomic_directory, write_atomic
from hone.errors import HoneError, InputError

if TYPE_CHECKING:
    import torch

    from hone.runtimes.base import Runner
    from hone.search.recipe import Recipe

MANIFEST = "manifest.json"
EXAMPLES = "examples.safetensors"
FORMAT = "hone-artifact"
VERSION = 2  # 2: checksums, example inputs and expected outputs, tolerances


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checksums(directory: Path, names: list[str]) -> dict[str, str]:
    """sha256 of each named file (a named folder: of every file inside it, by relative path)."""
    found: dict[str, str] = {}
    for name in names:
        path = directory / name
        if path.is_dir():
            for inner in sorted(p for p in path.rglob("*") if p.is_file()):
                found[inner.relative_to(directory).as_posix()] = sha256_of(inner)
        else:
            found[name] = sha256_of(path)
    return found


def digest(sums: dict[str, str]) -> str:
    """One checksum over every file's: what a stored result keeps of its artifact."""
    text = "".join(f"{name}\0{sums[name]}\n" for name in sorted(sums))
    return hashlib.sha256(text.encode()).hexdigest()


def save(
    runner: "Runner",
    recipe: "Recipe",
    directory: str | Path,
    *,
    input_names: list[str],
    output_names: list[str],
    example_inputs: "tuple[torch.Tensor, ...]",
    reference: "tuple[torch.Tensor, ...] | None" = None,
    outputs: "tuple[torch.Tensor, ...] | None" = None,
    checks: list[dict[str, Any]] | None = None,
    p50_s: dict[str, float] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the runner's product, its examples and a manifest into `directory` (created; must
    be empty). `outputs`: what the runner gave for `example_inputs` (run here when not given);
    `reference`: eager fp32's outputs for them; `checks`: the verdict's per-output checks
    (OutputCheck.to_dict()), whose atol/rtol a load must meet again. An output whose check
    passed is held to the reference; one whose check was advisory (quantized compute, the task
    metric decided) to the outputs the build gave. Without checks, the tolerance of the
    runner's compute dtype. Raises Unsupported when the runtime has no saved form."""
    directory = Path(directory)
    _refuse_non_empty(directory)
    with _new_artifact(directory) as partial:
        write_artifact(runner, recipe, partial, input_names=input_names, output_names=output_names,
                       example_inputs=example_inputs, reference=reference, outputs=outputs, checks=checks,
                       p50_s=p50_s, extra=extra)
    return directory


def _refuse_non_empty(directory: Path) -> None:
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InputError(f"{directory} is not empty", hint="export into a new or empty directory")


@contextlib.contextmanager
def _new_artifact(directory: Path) -> Iterator[Path]:
    """hone.atomic.atomic_directory, with a target that filled up meanwhile an InputError."""
    try:
        with atomic_directory(directory) as partial:
            yield partial
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise InputError(f"{directory} is not empty", hint="export into a new or empty directory") from None
        raise


def write_artifact(runner: "Runner", recipe: "Recipe", directory: Path, **kw: Any) -> dict[str, Any]:
    """`save` into an existing directory; returns the manifest."""
    import torch
    from safetensors.torch import save_file

    from hone.validate.compare import tolerance

    input_names, output_names = kw["input_names"], kw["output_names"]
    inputs = tuple(kw["example_inputs"])
    files = runner.save(directory)
    outputs = kw.get("outputs")
    if outputs is None:
        outputs = runner(*inputs)
    reference = kw.get("reference")
    checks = kw.get("checks")
    tensors: dict[str, torch.Tensor] = {}
    for i, t in enumerate(inputs):
        tensors[f"input.{i}"] = _plain(t)
    described = []
    for i, (name, out) in enumerate(zip(output_names, outputs)):
        want = reference[i] if reference is not None else out
        if reference is None:
            against = "measured"
        else:
            against = "reference" if checks is None or checks[i]["passed"] else "measured"
        if checks is not None:
            atol, rtol = float(checks[i]["atol"]), float(checks[i]["rtol"])
        elif want.is_floating_point():
            rtol, floor = tolerance(runner.compute_dtype or "float32")
            atol = max(floor, rtol * float(want.detach().abs().max())) if want.numel() else floor
        else:  # integer outputs (token ids, argmax): exact
            atol = rtol = 0.0
        if reference is not None:
            tensors[f"reference.{i}"] = _plain(want)
        if against == "measured":
            tensors[f"measured.{i}"] = _plain(out)
        described.append({"name": name, "shape": list(out.shape), "dtype": _dtype(out), "atol": atol, "rtol": rtol,
                          "against": against})
    save_file(tensors, str(directory / EXAMPLES))
    sums = checksums(directory, [*files, EXAMPLES])
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "recipe": recipe.to_dict(),
        "files": files,
        "examples": EXAMPLES,
        "checksums": sums,
        "sha256": digest(sums),
        "input_names": input_names,
        "output_names": output_names,
        "inputs": [{"name": n, "shape": list(t.shape), "dtype": _dtype(t)} for n, t in zip(input_names, inputs)],
        "outputs": described,
        "p50_s": kw.get("p50_s") or {},
        "runner_info": runner.report(),
        "summary": runner.summary(),
        **(kw.get("extra") or {}),
    }
    write_manifest(directory, manifest)
    return manifest


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    write_atomic(Path(directory) / MANIFEST, json.dumps(manifest, indent=2, default=str))


def _plain(t: "torch.Tensor") -> "torch.Tensor":
    return t.detach().to("cpu").contiguous().clone()


def _dtype(t: "torch.Tensor") -> str:
    return str(t.dtype).removeprefix("torch.")


def deploy_record(run: Any, result: Any) -> dict[str, Any]:
    """What an exported manifest adds for `hone verify` and `hone bench` (from the RunInfo and
    the exported CandidateResult): `timing`, the p50 measured at the exported input set with
    the batch, threads, device and machine it was measured at; `batch_axes`, each input's
    (dim 0, hone's convention) and each output's, so the examples can be resized."""
    m = result.measurement
    timing = None if m is None else {
        "p50_s": m.p50, "batch_size": m.batch_size, "threads": m.threads, "timer": m.timer, "device": run.device,
        "fingerprint": run.fingerprint, "cpu_name": run.hardware.get("cpu_name"),
    }
    return {"timing": timing, "batch_axes": {"inputs": 0, "outputs": dict(run.output_batch_axes)}}


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise InputError(f"{directory} has no {MANIFEST}", hint="point at a directory written by `hone optimize --export`")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # cut short, or not JSON
        raise InputError(f"{path} cannot be read as a hone manifest ({type(exc).__name__}: {exc})",
                         hint="export the artifact again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise InputError(f"{path} is not a hone artifact of version {VERSION}",
                         hint="export it again with this hone" if manifest.get("format") == FORMAT else None)
    return manifest


def verify(directory: str | Path, manifest: dict[str, Any] | None = None, sha256: str | None = None) -> dict[str, Any]:
    """Check every file against the manifest's checksums (and the whole against `sha256`, the
    checksum a stored result keeps); raise InputError naming the file that changed."""
    directory = Path(directory)
    manifest = manifest if manifest is not None else read_manifest(directory)
    recorded: dict[str, str] = manifest.get("checksums") or {}
    for name, want in sorted(recorded.items()):
        path = directory / name
        if not path.is_file():
            raise InputError(f"artifact {directory}: {name} is missing", hint="export the run's winner again")
        got = sha256_of(path)
        if got != want:
            raise InputError(
                f"artifact {directory}: {name} changed since it was saved (sha256 {got[:16]}..., recorded {want[:16]}...)",
                hint="the file was modified or corrupted; export the run's winner again",
            )
    if digest(recorded) != manifest.get("sha256") or (sha256 is not None and sha256 != manifest.get("sha256")):
        raise InputError(f"artifact {directory}: {MANIFEST} does not match the checksum recorded for it",
                         hint="the manifest was edited or belongs to another artifact")
    return manifest


def copy_artifact(source: str | Path, target: str | Path, sha256: str, extra: dict[str, Any] | None = None) -> Path:
    """Copy a saved artifact (checked against `sha256`, its stored checksum) into `target`
    (created; must be empty), adding `extra` to its manifest."""
    source, target = Path(source), Path(target)
    manifest = verify(source, sha256=sha256)
    _refuse_non_empty(target)
    with _new_artifact(target) as partial:
        for name in [*manifest["files"], manifest["examples"]]:
            src = source / name
            if src.is_dir():
                shutil.copytree(src, partial / name)
            else:
                shutil.copyfile(src, partial / name)
        write_manifest(partial, {**manifest, **(extra or {})})
        verify(partial, sha256=sha256)  # what is renamed into place is what was measured
    return target


def load_examples(directory: Path, manifest: dict[str, Any]) -> "tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]":
    """The saved example inputs and the outputs they must give."""
    from safetensors.torch import load_file

    from hone.models._safetensors_safety import check_safetensors

    check_safetensors(directory / manifest["examples"])  # a manifest can be rewritten to match a forged file
    tensors = load_file(str(directory / manifest["examples"]))
    inputs = tuple(tensors[f"input.{i}"] for i in range(len(manifest["inputs"])))
    expected = tuple(tensors[f"{spec['against']}.{i}"] for i, spec in enumerate(manifest["outputs"]))
    return inputs, expected


def load(directory: str | Path, *, threads: int | None = None, device: str = "cpu", check: bool = True,
         sha256: str | None = None, config: dict[str, Any] | None = None, runtime_path: str | None = None,
         output_batch_axes: "list[int | None] | None" = None) -> "Runner":
    """The saved candidate, ready to call with inputs in `manifest["input_names"]` order.

    Refuses (InputError) an artifact whose files do not match their checksums (or, given
    `sha256`, the checksum a stored result recorded for it); with `check`, runs the saved
    example inputs and refuses (HoneError) outputs that miss the recorded ones by more than the
    recorded tolerances. `config`: fields of the runtime's config to load it with instead of the
    recorded ones (a serving knob: OpenVINO streams); the check then holds it to the same outputs.
    `runtime_path`: the runtime's "module:Object", for a process where it is not registered (a
    server worker serving a plugin's artifact). `output_batch_axes`: each output's batch axis
    (None: none), for a runner that splits a call's batch (default: the manifest's, else dim 0)."""
    import tempfile
    import weakref

    import torch

    from hone.plugin import BuildContext
    from hone.registry import RUNTIMES

    directory = Path(directory)
    manifest = verify(directory, sha256=sha256)
    step = manifest["recipe"]["runtime"]
    runtime = RUNTIMES.get(step["name"]) if runtime_path is None else _import_path(runtime_path)
    config = runtime.Config.from_dict({**step["config"], **(config or {})})
    inputs, expected = load_examples(directory, manifest)
    inputs = tuple(t.to(device) for t in inputs)
    if output_batch_axes is None:
        recorded = (manifest.get("batch_axes") or {}).get("outputs") or {}
        output_batch_axes = [recorded.get(name, 0) for name in manifest["output_names"]]
    # The runtime's scratch folder (an AOTInductor package's extracted library) lives as long as
    # the runner: removed when it is collected or the interpreter exits, or here if loading fails.
    workdir = Path(tempfile.mkdtemp(prefix=scratch.prefix("load")))
    try:
        ctx = BuildContext(inputs, manifest["input_names"], manifest["output_names"], workdir,
                           threads or torch.get_num_threads(), device, output_batch_axes=list(output_batch_axes))
        runner = runtime(config).load(directory, manifest["files"], ctx)
        weakref.finalize(runner, shutil.rmtree, workdir, ignore_errors=True)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    if check:
        check_outputs(directory, manifest, runner(*inputs), expected)
    return runner


def _import_path(path: str) -> Any:
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def check_outputs(directory: Path, manifest: dict[str, Any], outputs, expected) -> None:
    import torch

    if len(outputs) != len(expected):
        raise HoneError(f"artifact {directory} gave {len(outputs)} outputs for its example inputs, not {len(expected)}")
    for spec, got, want in zip(manifest["outputs"], outputs, expected):
        name, atol, rtol = spec["name"], spec["atol"], spec["rtol"]
        what = "eager fp32 reference" if spec["against"] == "reference" else "outputs measured when it was built"
        if tuple(got.shape) != tuple(want.shape):
            raise HoneError(f"artifact {directory}: output {name!r} has shape {list(got.shape)} on its example "
                            f"inputs, the recorded {what} {list(want.shape)}")
        a, e = got.detach().to("cpu", torch.float64), want.to(torch.float64)
        diff = (a - e).abs()
        within = (diff <= atol + rtol * e.abs()) | (a == e)
        if not bool(within.all()):
            worst = float(diff[torch.isfinite(diff)].max()) if torch.isfinite(diff).any() else float("nan")
            raise HoneError(
                f"artifact {directory}: output {name!r} misses the {what} on its example inputs "
                f"(max abs err {worst:.3g}, atol {atol:.3g}, rtol {rtol:.3g})",
                hint="it does not compute what was measured (another machine or library version?); "
                     "hone.load(..., check=False) loads it anyway",
            )
