"""Apache TVM: the model exported with torch.export, imported into Relax, compiled for LLVM with
the host's CPU and run by the Relax virtual machine.

Build: torch.export on the example inputs (static shapes: each input set gets its own build),
Relax's torch frontend, the zero pipeline (legalize to TIR, fold constants, fuse), optionally
MetaSchedule's schedules from its database, then `tvm.compile`'s default lowering. Weights are
constants of the compiled library. A frontend that cannot convert an op is `Unsupported` with
its reason.

Untuned (`tuning_trials=0`), every TIR function keeps TVM's default schedule: plain loop nests,
not parallelised or tiled, so expect it far slower than eager (MiniLM at batch 1, 2 threads here:
2.0 s per call against eager's 25 ms). Tuned, MetaSchedule searches schedules for `tuning_trials`
trials in all (`_tvm_tuning.py`: cached per model and machine, reused by later builds): 64 trials
took 35 s and ran MiniLM in 34 ms. The info reports the tuning time, the database, whether it was
reused and how many functions got a tuned schedule.

Target: "" is the host, as TVM detects it (`Target.from_device`: LLVM's host CPU, e.g. znver4),
with `num-cores` = the candidate's threads (MetaSchedule tunes for that many). TVM 0.27 takes
targets as JSON objects only ("llvm -mcpu=..." strings were dropped), so a configured target is a
JSON object such as {"kind": "llvm", "mcpu": "znver4"}. The target actually used is read back
from TVM's Target object and stored.

Threads: TVM's pool sizes itself once, when it first starts, from TVM_NUM_THREADS (else half the
logical CPUs: it assumes SMT, so 1 thread on these 2-core machines). hone starts it with every
usable CPU, narrows it to the candidate's threads (`runtime.config_threadpool`; it can narrow,
never grow), and reads the count back.

apache-tvm 0.27 crashes (segfault) serialising any TVM object (MetaSchedule's database, saving)
with apache-tvm-ffi 0.1.15.x; 0.1.14.post1 works. The runtime says so instead of crashing.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hone.config import Config
from hone.errors import InputError, Unsupported
from hone.plugin import Artifact, BuildContext, Claim, Variant
from hone.runtimes._tvm_tuning import environ
from hone.runtimes.base import Runner, Runtime
from hone.runtimes.inductor import _has_cxx_compiler

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

DEFAULT_TUNING_TRIALS = 64
LIBRARY = "model.so"  # the compiled VM executable, weights inside
FACTS = "tvm.json"  # what the build settled on, so a loaded library reports it too
_KBIG = 1  # runtime.config_threadpool's affinity mode: TVM's default (the fastest cores)
_ALIGNMENT = 64  # TVM's kernels assume 64-byte aligned buffers; torch allocates at that alignment


@dataclasses.dataclass(frozen=True)
class TvmConfig(Config):
    tuning_trials: int = 0  # MetaSchedule trials in all; 0: TVM's default schedules, no tuning
    target: str = ""  # "": the host CPU; else a TVM target as a JSON object, kind llvm

    def validate(self) -> None:
        if isinstance(self.tuning_trials, bool) or not isinstance(self.tuning_trials, int) or self.tuning_trials < 0:
            raise InputError(f"tuning_trials must be an integer >= 0, not {self.tuning_trials!r}")
        if self.target:
            kind = _parse_target(self.target).get("kind")
            if kind != "llvm":
                raise InputError(f"the tvm runtime runs on the CPU: target kind must be llvm, not {kind!r}")


class TvmRunner(Runner):
    """Calls the VM's `main` with the inputs shared through DLPack (no copy when contiguous
    and aligned); the outputs come back the same way, as torch tensors over TVM's buffers."""

    def __init__(self, executable: Any, vm: Any, info: dict[str, Any]):
        self.executable = executable  # kept for save(); the VM holds the loaded library
        self.vm = vm
        self._main = vm["main"]
        self._info = info

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        import tvm

        args = [tvm.runtime.from_dlpack(_shareable(t)) for t in inputs]
        return tuple(torch.from_dlpack(o) for o in self._main(*args))

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def summary(self) -> list[str]:
        if not self._info.get("tuning_s"):
            return []
        return [f"tuning {self._info['tuning_s']:.0f} s" + (" (database reused)" if self._info.get("tuning_db_reused") else "")]

    def save(self, directory: Path) -> list[str]:
        try:
            self.executable.export_library(str(Path(directory) / LIBRARY))  # links with the C compiler
        except Exception as exc:
            raise Unsupported(f"TVM could not export the compiled library: {_first_line(exc)}") from exc
        facts = {k: v for k, v in self._info.items() if isinstance(v, (str, int, float, bool)) or v is None}
        (Path(directory) / FACTS).write_text(json.dumps(facts, indent=2, sort_keys=True))
        return [LIBRARY, FACTS]


class Tvm(Runtime[TvmConfig]):
    name = "tvm"
    Config = TvmConfig
    description = "Apache TVM: Relax from torch.export, built for LLVM on the host CPU, optionally MetaSchedule-tuned"
    requires = ("tvm",)
    devices = ("cpu",)

    @classmethod
    def unavailable_here(cls, hw: "Hardware", device: str) -> str | None:
        if not _has_cxx_compiler():
            return "TVM links compiled libraries with a C/C++ compiler (g++ or clang++), none on PATH"
        return _incompatible_ffi()

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if device != "cpu":
            return []
        # Costs from worker wall times against eager's: untuned builds fast but runs its
        # validation and timing calls ~80x slower than eager on MiniLM (23x eager's worker time;
        # 3x on a tiny MLP); tuning 64 trials took 7x (MiniLM) to 15x (tiny MLP).
        return [
            Variant(TvmConfig(), "tvm",
                    "Relax built for LLVM with the host CPU (-mcpu), untuned: TVM's default schedules", cost=10.0,
                    stack=False),
            Variant(TvmConfig(tuning_trials=DEFAULT_TUNING_TRIALS), "tvm-tuned",
                    f"MetaSchedule tuning, {DEFAULT_TUNING_TRIALS} trials, database cached per model and machine",
                    cost=12.0, addresses={"compute": Claim(0.3, "MetaSchedule tunes the compute-bound kernels for this CPU")},
                    stack=False),
        ]

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        import tvm
        from tvm import relax

        from hone.runtimes import _tvm_tuning

        cfg = self.config
        threads = use_threads(ctx.threads)
        target = _target(cfg.target, ctx.threads)
        target_json = str(target)  # TVM prints a Target as its JSON object

        start = time.perf_counter()
        mod = _import_relax(model.module.eval(), ctx.example_inputs)
        import_s = time.perf_counter() - start

        start = time.perf_counter()
        with target:
            mod = tvm.transform.Sequential([
                relax.transform.DecomposeOpsForInference(),  # batch norm and the like in inference form
                relax.transform.CanonicalizeBindings(),
                relax.get_pipeline("zero"),  # legalize to TIR, fold constants, fuse
            ])(mod)
        tuning = None
        if cfg.tuning_trials:
            tuning = _tvm_tuning.tune(mod, target, target_json, cfg.tuning_trials, ctx.threads)
            with target, tuning.database:
                mod = relax.transform.MetaScheduleApplyDatabase()(mod)
        tuned_functions = _tvm_tuning.applied_functions(mod)
        functions = sum(1 for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc))
        try:
            executable = tvm.compile(mod, target)
        except Exception as exc:
            raise Unsupported(f"TVM could not compile the model: {_first_line(exc)}") from exc
        compile_s = time.perf_counter() - start - (tuning.seconds if tuning else 0.0)

        vm = relax.VirtualMachine(executable, tvm.cpu())
        info = {
            "backend": "tvm",
            "tuning_trials": cfg.tuning_trials,
            "target": target_json,  # as TVM's Target object holds it, after parsing and defaults
            "threads": threads,
            "tir_functions": functions,
            "tuned_functions": tuned_functions,
            "import_s": round(import_s, 3),  # torch.export and the Relax frontend
            "compile_s": round(compile_s, 3),
            **(tuning.info() if tuning else {}),
            **_versions(),
        }
        return TvmRunner(executable, vm, info)

    def load(self, directory: Path, files: list[str], ctx: BuildContext) -> Runner:
        import tvm
        from tvm import relax

        facts_file = Path(directory) / FACTS
        facts = json.loads(facts_file.read_text()) if FACTS in files and facts_file.exists() else {}
        threads = use_threads(ctx.threads)
        library = tvm.runtime.load_module(str(Path(directory) / LIBRARY))
        vm = relax.VirtualMachine(library, tvm.cpu())
        info = {**facts, "threads": threads, "loaded_from": str(Path(directory) / LIBRARY), **_versions()}
        return TvmRunner(library, vm, info)


def use_threads(threads: int) -> int:
    """Size TVM's thread pool to `threads` and return the count read back from TVM."""
    import tvm

    # TVM reads the variable when the pool starts (its size) and on every reconfiguration: left
    # unset there, it counts half the CPUs as the "big" cores and pins the calling thread (the
    # user's Python main thread, torch's too) to them, core 0 alone on a 2-core machine.
    with environ(TVM_NUM_THREADS=str(max(threads, len(os.sched_getaffinity(0))))):
        tvm.runtime.num_threads()  # starts the pool, at the size above, unless it runs already
        tvm.get_global_func("runtime.config_threadpool")(_KBIG, threads)
    return int(tvm.runtime.num_threads())


def _import_relax(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> Any:
    from tvm.relax.frontend.torch import from_exported_program

    try:
        with torch.no_grad():
            exported = torch.export.export(module, tuple(example_inputs))
    except Exception as exc:
        raise Unsupported(f"torch.export failed: {_first_line(exc)}") from exc
    try:
        return from_exported_program(exported)
    except Exception as exc:  # the frontend asserts on unknown ops ("Unsupported function types [...]")
        raise Unsupported(f"TVM's Relax torch frontend cannot convert the model: {_first_line(exc)}") from exc


def _target(configured: str, threads: int) -> Any:
    import tvm

    spec = _parse_target(configured) if configured else json.loads(str(tvm.target.Target.from_device(tvm.cpu())))
    spec.setdefault("num-cores", threads)  # MetaSchedule's CPU rules parallelise for this many
    try:
        return tvm.target.Target(spec)
    except Exception as exc:
        raise InputError(f"TVM rejects the target {configured or spec}: {_first_line(exc)}") from exc


def _parse_target(text: str) -> dict[str, Any]:
    try:
        target = json.loads(text)
    except json.JSONDecodeError:
        target = {"kind": "llvm"} if text == "llvm" else None
    if not isinstance(target, dict):
        raise InputError(
            f"target {text!r} is not a TVM target: give a JSON object such as "
            '{"kind": "llvm", "mcpu": "znver4"} (TVM 0.27 no longer parses "llvm -mcpu=..." strings)'
        )
    return target


def _shareable(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor itself when TVM can read it in place, else an aligned contiguous copy."""
    tensor = tensor.detach()
    if tensor.is_contiguous() and tensor.data_ptr() % _ALIGNMENT == 0:
        return tensor
    return tensor.clone(memory_format=torch.contiguous_format)


def _incompatible_ffi() -> str | None:
    """apache-tvm 0.27 with apache-tvm-ffi 0.1.15.x segfaults in every JSON serialisation
    (tvm.ir.save_json: MetaSchedule's database). Read from package metadata, without importing."""
    try:
        tvm_version = importlib.metadata.version("apache-tvm")
        ffi_version = importlib.metadata.version("apache-tvm-ffi")
    except importlib.metadata.PackageNotFoundError:
        return None  # a source build: nothing known against it
    if tvm_version.startswith("0.27") and ffi_version.startswith("0.1.15"):
        return (f"apache-tvm {tvm_version} crashes with apache-tvm-ffi {ffi_version} (segfault serialising IR); "
                "pip install apache-tvm-ffi==0.1.14.post1")
    return None


def _versions() -> dict[str, Any]:
    import tvm
    import tvm_ffi
    from tvm.target import codegen

    return {
        "tvm_version": tvm.__version__,
        "tvm_ffi_version": tvm_ffi.__version__,
        "llvm_version": codegen.llvm_version_major(allow_none=True),
    }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
