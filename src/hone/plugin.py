"""What passes and runtimes share: a name, a Config, static declarations, an availability check.

Declarations are static (class attributes and `variants()`) so the composer, the planner and
`hone doctor` read them without importing any backend; `available()` must not import the
backend either: it uses find_spec. A plugin never names another plugin or its config: the
composer (search/compose.py) builds chains from what each step consumes and produces.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from hone import config as _config
from hone._optional import missing_reason
from hone.errors import HoneError, Unsupported, is_out_of_memory

if TYPE_CHECKING:
    import torch

    from hone.hardware import Hardware
    from hone.models.workload import TrainSet, Workload
    from hone.search.recipe import Recipe

C = TypeVar("C", bound=_config.Config)
T = TypeVar("T")


# Stages order the passes of one chain within one artifact format: a model is rewritten, laid
# out, pruned, set to a precision, quantized, then converted to another format (where the order
# starts again for that format's passes). At most one pass per stage per format.
STAGES = ("rewrite", "layout", "prune", "precision", "quantize", "convert")
# What a profile can find: where the time goes (profiler.advice).
FINDINGS = ("overhead", "memory", "compute")


@dataclasses.dataclass(frozen=True)
class Claim:
    """A step's claim on a finding of the profile: how much of it the step can address
    (a weight in (0, 1], relative to the other steps' claims) and why."""

    weight: float
    reason: str
    # The claim holds only where the profile finds this unit paying off here ("bf16": bf16
    # units; "int8": int8 GEMMs measured faster than fp32). None: on any machine.
    unit: str | None = None


@dataclasses.dataclass(frozen=True)
class Variant(Generic[C]):
    """One configuration of a pass or runtime worth trying on a workload and machine."""

    config: C
    tag: str  # its part of a recipe label ("pt2e-int8", "inductor-max-autotune"); "" adds nothing
    origin: str  # what it does, in words (the report's "planned because" without a finding)
    # Expected worker wall time this step adds, in units of an eager candidate's (the baseline
    # runtime is 1.0); a recipe's cost is the sum of its steps' (search.budget plans with it).
    cost: float = 0.0
    compute_dtype: str | None = None  # what the model computes in after this step (None: unchanged)
    addresses: Mapping[str, Claim] = dataclasses.field(default_factory=dict)  # finding -> claim
    # Where overhead dominates, a step that pays only for memory or compute (lower precision:
    # it adds casts and saves no dispatch) is left out of the plan.
    pays_for: tuple[str, ...] = FINDINGS
    gives: frozenset[str] = frozenset()  # traits of the artifact after it ("channels_last")
    needs: frozenset[str] = frozenset()  # traits an earlier step must have given
    # Runtimes: planned by default without passes in front. Passes: planned by default on the
    # default runtime for what they produce (False: composed on request only, e.g. a sweep's
    # other ratios).
    alone: bool = True
    # Runtimes: passes are stacked onto it by default. Passes: stacked by default onto every
    # other runtime that takes their output. False: on request only.
    stack: bool = True
    # Runtimes: runs a model of this format as its user runs it today, unoptimized: the
    # baseline where the format is the workload's source (search.compose), planned whatever
    # `alone` says. Where no variant of the source's default runtime is marked, its first is.
    baseline: bool = False


class Plugin(Generic[C]):
    """What passes and runtimes share: a name, a config, static declarations, an availability
    check. `self.config` is typed by the subclass: `class Inductor(Runtime[InductorConfig])`."""

    name: ClassVar[str] = ""  # registry key, snake_case
    Config: ClassVar[type] = _config.NoConfig
    description: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()  # importable package names (find_spec-checked)
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    # The artifact formats it takes ("torch", "torch-quantized", "onnx", "openvino", ...) and
    # the compute dtypes it can take them in ("*": any).
    consumes: ClassVar[tuple[str, ...]] = ("torch",)
    accepts_dtypes: ClassVar[tuple[str, ...]] = ("float32",)
    # Traits of its input that it keeps in effect ("*": all). A trait an earlier step gave that
    # a later one drops means that step's work is lost: the composer refuses such a chain.
    keeps: ClassVar[tuple[str, ...]] = ()

    config: C

    def __init__(self, config: C | None = None):
        config = config if config is not None else self.Config()
        if not isinstance(config, self.Config):
            raise TypeError(f"{self.name} takes a {self.Config.__name__}, not {type(config).__name__}")
        self.config = config

    @classmethod
    def available(cls, hw: "Hardware", device: str = "cpu") -> str | None:
        """None when this plugin can run on `device` of `hw`, else the reason it cannot.
        Checks the declared devices and packages, then the plugin's own `unavailable_here`."""
        if device.split(":")[0] not in cls.devices:  # "cuda:1" is a cuda device
            return f"runs on {', '.join(cls.devices)}, not {device}"
        return missing_reason(*cls.requires) or cls.unavailable_here(hw, device)

    @classmethod
    def unavailable_here(cls, hw: "Hardware", device: str) -> str | None:
        """A plugin's own capability check (bf16 units, a compiler, ...); None when it can run."""
        return None

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        """The configs worth trying on this workload and machine, given an artifact of `fmt`;
        the first is the default. Empty: this plugin has nothing to offer here."""
        return []

    @classmethod
    def propose(cls, workload: "Workload | None", hw: "Hardware | None", device: str) -> list["Recipe"]:
        """The recipes the composer makes of this plugin's variants alone: a runtime's on its
        own, a pass's on the default runtime for what it produces (search.compose)."""
        from hone.search.compose import anchored

        return anchored(cls, workload, hw, device)

    def backend_failure(self, exc: BaseException) -> str | None:
        """The one-line reason when `exc` was raised inside the backend (its innermost frame in
        neither hone nor this plugin's module): the candidate is then `unsupported`. None when
        hone's own code (or the plugin's) raised it: that is a bug, the candidate `crashed`.
        A plugin may override this to recognise more."""
        return backend_failure(exc, type(self).__module__)

    def _guarded(self, what: str, call: Callable[[], T]) -> tuple[T, float]:
        """The template methods' shared part: run the step, time it, and map a backend's
        exception to `Unsupported` with the backend's first line."""
        start = time.perf_counter()
        try:
            out = call()
        except (HoneError, KeyboardInterrupt):
            raise
        except Exception as exc:
            if is_out_of_memory(exc):  # the worker reports it as `oom`
                raise
            reason = self.backend_failure(exc)
            if reason is None:
                raise
            raise Unsupported(f"{self.name} {what} failed: {reason}") from exc
        return out, time.perf_counter() - start


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # "<function f at 0x7f...>": differs per process


def first_line(exc: BaseException) -> str:
    """`Type: first line` of the message, without object addresses: the same failure at two
    input sets must read the same (the report folds identical reasons). hone's own errors
    are their message alone."""
    text = str(exc).strip()
    line = _ADDRESS.sub("", next((part.strip() for part in text.splitlines() if part.strip()), ""))
    if isinstance(exc, HoneError):
        return line
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


_HONE_DIR = str(Path(__file__).resolve().parent)


def backend_failure(exc: BaseException, plugin_module: str) -> str | None:
    """See Plugin.backend_failure. Decided by where the exception was raised: its innermost
    frame in a backend library is the backend's failure. Raised in hone's (or the plugin's)
    own code, it is a bug unless its type is the backend's own (an onnxruntime `Fail`, a
    Dynamo `Unsupported` raised from C++ under a call of ours): a builtin error there (a
    TypeError, a KeyError, a RuntimeError from an op we called) stays a crash."""
    tb = exc.__traceback__
    if tb is None:
        return first_line(exc)
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = str(Path(tb.tb_frame.f_code.co_filename).resolve())
    module = sys.modules.get(plugin_module)
    own = [_HONE_DIR]
    if module is not None and getattr(module, "__file__", None):
        own.append(str(Path(module.__file__).resolve()))
    if not any(filename == p or filename.startswith(p + os.sep) for p in own):
        return first_line(exc)
    kind = type(exc).__module__
    if kind != "builtins" and kind.split(".")[0] != "hone" and kind != plugin_module:
        return first_line(exc)
    return None


@dataclasses.dataclass
class Artifact:
    """A model between steps of a recipe: a torch module (FlatIO I/O) or a file (ONNX, OpenVINO IR)."""

    format: str  # "torch" | "onnx"
    module: "torch.nn.Module | None" = None
    path: Path | None = None
    compute_dtype: str = "float32"  # the precision it computes in: decides the tolerance
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)  # what was done, for the store
    # Changed beyond rounding by an earlier step (pruning): the task metric decides, not the
    # tensor tolerance of its compute dtype (validate.check).
    approximate: bool = False


@dataclasses.dataclass
class BuildContext:
    """Everything a pass or runtime may need besides the model; no global state."""

    example_inputs: "tuple[torch.Tensor, ...]"
    input_names: list[str]
    output_names: list[str]
    workdir: Path
    threads: int
    device: str = "cpu"
    # Calibration samples (inputs in name order, stacked on dim 0) for quantization passes.
    calibration: "tuple[torch.Tensor, ...] | None" = None
    # Data and loss for quantization-aware training, when the workload has them.
    train: "TrainSet | None" = None
    # Each output's batch axis, in output order (None: no batch axis); empty: unknown, dim 0.
    output_batch_axes: "list[int | None]" = dataclasses.field(default_factory=list)

    def calibration_batches(self) -> "list[tuple[torch.Tensor, ...]]":
        """The calibration samples in batches of the example inputs' batch size: an exported or
        compiled model may accept only that shape. The last batch is padded by repeating its
        final sample (a duplicate moves no min/max and barely a histogram)."""
        import torch

        if not self.calibration:
            return [self.example_inputs]
        batch = int(self.example_inputs[0].shape[0])
        n = int(self.calibration[0].shape[0])
        batches = []
        for start in range(0, n, batch):
            chunk = [t[start : start + batch] for t in self.calibration]
            pad = batch - int(chunk[0].shape[0])
            if pad:
                chunk = [torch.cat([t, t[-1:].expand(pad, *t.shape[1:])]) for t in chunk]
            batches.append(tuple(chunk))
        return batches
