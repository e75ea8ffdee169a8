"""Runtimes that misbehave on purpose, to prove the sweep survives them.

They live outside hone's packages and are registered explicitly, as a user's plugin would be;
worker processes import this module by path (tests/ is on sys.path, and workers inherit it).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import torch

from hone.atomic import write_atomic
from hone.config import Config
from hone.errors import Unsupported
from hone.plugin import Artifact, BuildContext
from hone.registry import RUNTIMES
from hone.runtimes.base import ModuleRunner, Runner, Runtime, shapes_of
from hone.search.recipe import Recipe, Step


class _TestRuntime(Runtime):
    devices = ("cpu", "cuda")
    runner_class: type[ModuleRunner] = ModuleRunner  # what `load` makes of a saved module

    @classmethod
    def recipe(cls) -> Recipe:
        return Recipe(cls.name, (), Step(cls.name, cls.Config()), origin="test")

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        """The module wrapped in `runner_class`, unlogged."""
        return self.runner_class(model.module, ctx.device, {}, ctx.example_inputs)

    def logged_build(self, model: Artifact, ctx: BuildContext) -> Runner:
        """Log the build (the tests count builds) and wrap the module in `runner_class`."""
        _log_build(self.name, ctx)
        return _TestRuntime.build_impl(self, model, ctx)

    def load(self, directory, files: list[str], ctx: BuildContext) -> Runner:
        from hone.runtimes.base import load_exported_module

        return self.runner_class(load_exported_module(directory, files, ctx.device), ctx.device, {}, ctx.example_inputs)


@RUNTIMES.register
class AbortRuntime(_TestRuntime):
    name = "test_abort"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        os.abort()


@RUNTIMES.register
class HangRuntime(_TestRuntime):
    name = "test_hang"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        time.sleep(3600)
        raise AssertionError("unreachable")


@RUNTIMES.register
class RaiseRuntime(_TestRuntime):
    name = "test_raise"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        raise ValueError("deliberate failure in build")


@RUNTIMES.register
class OomRuntime(_TestRuntime):
    name = "test_oom"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        raise MemoryError("deliberate")


@RUNTIMES.register
class UnsupportedRuntime(_TestRuntime):
    name = "test_unsupported"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        print("backend chatter before an expected refusal", file=sys.stderr, flush=True)
        raise Unsupported("op aten::frobnicate has no kernel here")


class _Affine(torch.nn.Module):
    """Every output of `module` times `scale` plus `offset`."""

    def __init__(self, module: torch.nn.Module, scale: float = 1.0, offset: float = 0.0):
        super().__init__()
        self.module, self.scale, self.offset = module, scale, offset

    def forward(self, *args):
        return tuple(o * self.scale + self.offset for o in self.module(*args))


@RUNTIMES.register
class WrongRuntime(_TestRuntime):
    """Fast and wrong: adds 1 to every output."""

    name = "test_wrong"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        return ModuleRunner(_Affine(model.module, offset=1.0))


@RUNTIMES.register
class NanRuntime(_TestRuntime):
    name = "test_nan"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        return ModuleRunner(_Affine(model.module, offset=float("nan")))


@RUNTIMES.register
class PerturbedEagerRuntime(_TestRuntime):
    """Eager with every output scaled by 1.001: far below anything a user would notice, far
    above fp32's tolerance. Labelled `eager`, it plays a harness that corrupts its control."""

    name = "test_perturbed_eager"

    @classmethod
    def recipe(cls) -> Recipe:
        return Recipe("eager", (), Step(cls.name, cls.Config()), origin="test", baseline=True)

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        return ModuleRunner(_Affine(model.module, scale=1.001))


# -- builds, counted: one worker builds once for every input set its runner serves ------------

BUILD_LOG = "HONE_TEST_BUILD_LOG"  # the file each build appends a line to (workers inherit it)


def _log_build(runtime: str, ctx: BuildContext) -> None:
    path = os.environ.get(BUILD_LOG)
    if path:
        with open(path, "a") as f:
            f.write(f"{os.getpid()} {runtime} {list(ctx.example_inputs[0].shape)}\n")


def logged_builds(path, runtime: str | None = None) -> list[tuple[int, list[int]]]:
    """(process id, first input's shape) of every build (of `runtime`) logged to `path`."""
    import json

    if not os.path.exists(path):
        return []
    lines = [line.split(" ", 2) for line in open(path).read().splitlines()]
    return [(int(pid), json.loads(shape)) for pid, name, shape in lines if runtime in (None, name)]


@RUNTIMES.register
class CountingRuntime(_TestRuntime):
    """Eager, logging every build: its runner takes any batch, so one build serves every set."""

    name = "test_counting"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        return self.logged_build(model, ctx)


class _ShapeBoundRunner(ModuleRunner):
    def serves(self, inputs: tuple[torch.Tensor, ...]) -> bool:
        return Runner.serves(self, inputs)  # only the shapes it was built for


@RUNTIMES.register
class ShapeBoundRuntime(_TestRuntime):
    """Eager, logging every build, whose runner serves only the shapes it was built for (a
    static engine): every input set needs its own build."""

    name = "test_shape_bound"
    runner_class = _ShapeBoundRunner

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        return self.logged_build(model, ctx)


class _AbortElsewhereRunner(ModuleRunner):
    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        if shapes_of(inputs) != self.built_for:
            print(f"aborting at shapes {shapes_of(inputs)}", file=sys.stderr, flush=True)
            os.abort()
        return super().infer_impl(inputs)


@RUNTIMES.register
class AbortAtOtherShapeRuntime(_TestRuntime):
    """Claims to serve any batch, then dies (SIGABRT) at the first call of another shape: a
    worker that crashes at its second input set."""

    name = "test_abort_at_other_shape"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        return _AbortElsewhereRunner(model.module, ctx.device, {}, ctx.example_inputs)


class _PlainRunner(Runner):
    """Runs a module, and has no saved form (Runner.save raises Unsupported)."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return self.module(*inputs)

    def serves(self, inputs: tuple[torch.Tensor, ...]) -> bool:
        return True


@RUNTIMES.register
class NoSaveRuntime(_TestRuntime):
    """Eager whose runner cannot be saved: the result says why, and so does an export."""

    name = "test_no_save"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        return _PlainRunner(model.module)


class _SlowRunner(ModuleRunner):
    delay_s = 0.002

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        time.sleep(self.delay_s)
        return super().infer_impl(inputs)


@RUNTIMES.register
class SlowEagerRuntime(_TestRuntime):
    """Eager, 2 ms slower per call: a baseline every real candidate beats, so a test decides
    which recipe wins without depending on this machine's speed."""

    name = "test_slow_eager"
    runner_class = _SlowRunner

    @classmethod
    def recipe(cls) -> Recipe:
        return Recipe("eager", (), Step(cls.name, cls.Config()), origin="test: a slow control", baseline=True)


class _RaisesElsewhereRunner(ModuleRunner):
    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        if shapes_of(inputs) != self.built_for:
            raise RuntimeError(f"Guard failed: built for {self.built_for}")  # a program specialised to its shape
        return super().infer_impl(inputs)


@RUNTIMES.register
class OverclaimingRuntime(_TestRuntime):
    """Its runner claims to serve any batch (ModuleRunner.serves) but raises at any shape but
    the one it was built for: the worker rebuilds for the next set."""

    name = "test_overclaiming"
    runner_class = _RaisesElsewhereRunner

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        return self.logged_build(model, ctx)


class _WrongElsewhereRunner(ModuleRunner):
    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        outputs = super().infer_impl(inputs)
        if shapes_of(inputs) != self.built_for:  # a trace that does not generalise
            return tuple(o + 1.0 for o in outputs)
        return outputs


@RUNTIMES.register
class NotGeneralisingRuntime(_TestRuntime):
    """Its runner claims to serve any batch but answers wrongly at any shape but its own."""

    name = "test_not_generalising"
    runner_class = _WrongElsewhereRunner

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        return self.logged_build(model, ctx)


class _SlowerRunner(_SlowRunner):
    delay_s = 0.01


@RUNTIMES.register
class SlowRuntime(_TestRuntime):
    """Right answers, 10 ms slower per call: a candidate that screening should stop early."""

    name = "test_slow"
    runner_class = _SlowerRunner


@dataclasses.dataclass(frozen=True)
class DelayConfig(Config):
    delay_s: float = 0.01


@RUNTIMES.register
class DelayRuntime(_TestRuntime):
    """Right answers, `config.delay_s` more per call: as many distinct (by key) candidates of a
    chosen speed as a test needs."""

    name = "test_delay"
    Config = DelayConfig

    @classmethod
    def recipe_with(cls, label: str, delay_s: float) -> Recipe:
        return Recipe(label, (), Step(cls.name, DelayConfig(delay_s)), origin="test")

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        runner = _SlowRunner(model.module, ctx.device, {}, ctx.example_inputs)
        runner.delay_s = self.config.delay_s
        return runner


class _BurstyRunner(ModuleRunner):
    """10 ms a call, but two calls in three hit a 50 ms burst: its median is the burst, its
    fastest tenth what it can do (a neighbour's load during a short screening)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        self.calls += 1
        time.sleep(0.01 if self.calls % 3 == 0 else 0.05)
        return super().infer_impl(inputs)


@RUNTIMES.register
class BurstyRuntime(_TestRuntime):
    """Right answers at 10 ms a call, timed through bursts that make most calls five times as slow."""

    name = "test_bursty"
    runner_class = _BurstyRunner


# -- drift: a machine that slows down over the run ---------------------------------------------

DRIFT_T0 = "HONE_TEST_DRIFT_T0"  # time.time() when the drift began (workers inherit it)
DRIFT_DOUBLING_S = 6.0  # every call takes one more base time per this many seconds of the run


def drift_factor() -> float:
    return 1.0 + (time.time() - float(os.environ.get(DRIFT_T0, time.time()))) / DRIFT_DOUBLING_S


class _DriftingRunner(ModuleRunner):
    """Each call takes `base_s` x drift_factor(), whatever the module costs: a spin, not a sleep,
    so the ratio of two of them is exact."""

    base_s = 0.004

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        deadline = time.perf_counter() + self.base_s * drift_factor()
        outputs = super().infer_impl(inputs)
        while time.perf_counter() < deadline:
            pass
        return outputs


class _DriftingFastRunner(_DriftingRunner):
    base_s = 0.002  # exactly twice as fast as the drifting eager at any moment


@RUNTIMES.register
class DriftingEagerRuntime(_TestRuntime):
    """Eager on a machine that slows down over the run: the baseline of the drift test."""

    name = "test_drifting_eager"
    runner_class = _DriftingRunner

    @classmethod
    def recipe(cls) -> Recipe:
        return Recipe("eager", (), Step(cls.name, cls.Config()), origin="test: a drifting control", baseline=True)


@RUNTIMES.register
class DriftingFastRuntime(DriftingEagerRuntime):
    """Twice as fast as DriftingEagerRuntime at every moment of the same drifting run."""

    name = "test_drifting_fast"
    runner_class = _DriftingFastRunner

    @classmethod
    def recipe(cls) -> Recipe:
        return Recipe(cls.name, (), Step(cls.name, cls.Config()), origin="test: twice as fast, drifting alike")


# -- a candidate to kill from outside ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PidFileConfig(Config):
    path: str = ""


@RUNTIMES.register
class SleepInBuildRuntime(_TestRuntime):
    """Writes "<its worker's pid> <that worker's parent's pid>" to `config.path`, then sleeps in
    build: a candidate whose worker, or whatever started it (a Ray task), a test kills."""

    name = "test_sleep_in_build"
    Config = PidFileConfig

    @classmethod
    def recipe_with(cls, path: str) -> Recipe:
        return Recipe(cls.name, (), Step(cls.name, PidFileConfig(str(path))), origin="test: killed from outside")

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        write_atomic(self.config.path, f"{os.getpid()} {os.getppid()}\n")  # whole or absent: the test polls for it
        time.sleep(3600)
        raise AssertionError("unreachable")


@dataclasses.dataclass(frozen=True)
class AllocateConfig(Config):
    total_mb: int = 3072


@RUNTIMES.register
class AllocateRuntime(_TestRuntime):
    """Allocates (and touches) `config.total_mb` in 64 MiB steps while it builds, then builds as
    eager: a candidate that really needs more memory than its worker may use."""

    name = "test_allocate"
    Config = AllocateConfig

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        held = []
        for _ in range(self.config.total_mb // 64):
            held.append(torch.ones(64 * 2**20, dtype=torch.uint8))  # written: resident, not only reserved
            time.sleep(0.02)
        del held
        return super().build_impl(model, ctx)


@RUNTIMES.register
class HangWhileFlagRuntime(_TestRuntime):
    """While the file `config.path` exists, writes "<worker pid>" to `<path>.pid` and sleeps in
    build (a candidate in flight when a test kills its run); without it, builds as eager."""

    name = "test_hang_while_flag"
    Config = PidFileConfig

    @classmethod
    def recipe_with(cls, path: str) -> Recipe:
        return Recipe(cls.name, (), Step(cls.name, PidFileConfig(str(path))), origin="test: in flight at a kill")

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        if os.path.exists(self.config.path):
            write_atomic(f"{self.config.path}.pid", str(os.getpid()))  # whole or absent: the test polls for it
            time.sleep(3600)
        return super().build_impl(model, ctx)


class _SilentBf16Runner(ModuleRunner):
    """Says nothing about its precision (so fp32) and computes in bf16: the module's weights
    and inputs rounded to bf16, the outputs cast back."""

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        if not hasattr(self, "_bf16"):
            import copy

            self._bf16 = copy.deepcopy(self.module).to(torch.bfloat16)
        outputs = self._bf16(*(x.to(torch.bfloat16) for x in inputs))
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        return tuple(o.float() for o in outputs)


@RUNTIMES.register
class SilentBf16Runtime(_TestRuntime):
    """A backend that claims fp32 and silently runs bf16."""

    name = "test_silent_bf16"
    runner_class = _SilentBf16Runner


@RUNTIMES.register
class PrecisionReportingRuntime(_TestRuntime):
    """Eager, reporting torch's fp32 precision switches as its build found them."""

    name = "test_precision_reporting"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        found = {"cudnn_tf32_at_build": bool(torch.backends.cudnn.allow_tf32),
                 "matmul_precision_at_build": torch.get_float32_matmul_precision()}
        return ModuleRunner(model.module, ctx.device, found, ctx.example_inputs)


FACTS = "HONE_TEST_FACTS"  # where ProcessFactsRuntime writes what its worker process is


@RUNTIMES.register
class ProcessFactsRuntime(_TestRuntime):
    """Eager, writing its worker's process facts (pid, parent, group, session, threads, the
    job's environment) as JSON to $HONE_TEST_FACTS: what a warm-started worker must share
    with a fresh one."""

    name = "test_process_facts"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        import json

        facts = {"pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgid(0), "sid": os.getsid(0),
                 "torch_threads": torch.get_num_threads(), "marker": os.environ.get("HONE_TEST_MARKER"),
                 "stdout": os.readlink("/proc/self/fd/1"), "cuda_initialized": torch.cuda.is_initialized()}
        write_atomic(os.environ[FACTS], json.dumps(facts))
        return super().build_impl(model, ctx)


@RUNTIMES.register
class KillsItsParentRuntime(_TestRuntime):
    """Kills the process its worker was started from (the warm start, when there is one), then
    waits: its own end must come from its parent's death, not from the sweep's timeout."""

    name = "test_kills_its_parent"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        import signal

        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(60)
        raise AssertionError("still running a minute after its parent died")


@RUNTIMES.register
class LeavesTempToExitRuntime(_TestRuntime):
    """Eager, with a temporary folder that only its process's exit removes (as a library's
    TemporaryDirectory left to its finalizer would be)."""

    name = "test_leaves_temp_to_exit"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        import tempfile

        _KEPT_TO_EXIT.append(tempfile.TemporaryDirectory(prefix="left-to-exit-"))  # alive until exit
        return super().build_impl(model, ctx)


_KEPT_TO_EXIT: list = []
