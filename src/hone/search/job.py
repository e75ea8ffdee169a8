"""What the parent hands an executor: a job (JSON-able) and the payload, the workload's bundle as
bytes (torch.save'd), so an executor needs no filesystem shared with the parent.

The bundle is made by this hone process and read back by its own workers, so loading it with
pickle (weights_only=False) trusts nothing the user did not already run; user-supplied model
files never go through this path.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import torch

from hone.bench.measure import MeasureSettings
from hone.models.workload import EvalSet, TrainSet
from hone.validate.verdict import AccuracyBudget


@dataclasses.dataclass
class Job:
    """One worker: one recipe, built once and run at each of `input_sets` in order (rebuilt for
    a set its runner does not serve)."""

    recipe: dict[str, Any]
    step_paths: list[str]
    input_sets: list[str]
    threads: int
    device: str
    accuracy_budget: float
    measure: dict[str, Any]
    sys_path: list[str]
    accuracy_budget_relative: bool = False  # accuracy_budget is a share of the fp32 score
    main_path: str | None = None  # the user's script, when the model class lives in __main__
    user_files: dict[str, str] = dataclasses.field(default_factory=dict)  # module name -> file
    stop_at_failure: bool = False  # leave the remaining sets once one fails (fallback retries)
    # The worker's memory limit (search.memory_watch): a fraction of the memory of the machine
    # it runs on (<= 1) or bytes; None: none.
    memory_limit: float | None = None
    # Where this worker saves its builds' artifacts (one folder per build); None: never saves.
    artifact_dir: str | None = None
    # What decides whether it saves: eager fp32's p50 per input set and the best geometric-mean
    # speedup (over every set) of a recipe ok everywhere so far (None: no contender yet). The
    # baseline always saves; another recipe only when it is ok at every set it ran and at least
    # as fast as the best so far, so the eventual winner always has its artifact.
    baseline_p50: dict[str, float] = dataclasses.field(default_factory=dict)
    best_speedup: float | None = None
    done_p50: dict[str, float] = dataclasses.field(default_factory=dict)  # this recipe's resumed sets
    # Screening: the fastest p50 of any recipe ok so far, per input set. A candidate whose short
    # screening measurement is clearly slower there keeps that measurement and is not timed in
    # full (search.execute); empty: everything is measured in full.
    best_p50: dict[str, float] = dataclasses.field(default_factory=dict)
    # The Pareto front so far per input set (search.pareto.Point.to_list: label, p50, error, peak
    # bytes): a candidate slower than the margin that no point dominates is measured in full.
    front: dict[str, list[list]] = dataclasses.field(default_factory=dict)
    # Also time a short screening when the answer misses the budget (finite, right shapes): the
    # accuracy fallback decides from it whether a retry could still win.
    screen_failures: bool = False
    # Saved artifacts of this recipe from an earlier run (same model, machine and versions), per
    # input set ({"dir", "sha256", "run"}): loaded and checked instead of built (search.execute).
    prebuilt: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    # Paired timing (bench.paired): the baseline recipe (and its step paths) that a candidate
    # measured in full is timed against, in the same worker; None: no pairing (the baseline's own job).
    pair_recipe: dict[str, Any] | None = None
    pair_step_paths: list[str] = dataclasses.field(default_factory=list)
    # Where the executor put the payload and wants the worker's scratch files and result: set by
    # the executor, on its own machine (search.executor), never by the sweep.
    bundle_path: str = ""
    workdir: str = ""
    result_path: str = ""

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def read(cls, path: Path) -> "Job":
        return cls(**json.loads(Path(path).read_text()))

    @property
    def budget(self) -> AccuracyBudget:
        return AccuracyBudget(self.accuracy_budget, self.accuracy_budget_relative)

    @property
    def measure_settings(self) -> MeasureSettings:
        return MeasureSettings(**self.measure)


@dataclasses.dataclass
class Bundle:
    module: torch.nn.Module
    input_names: list[str]
    output_names: list[str]
    inputs: dict[str, tuple[torch.Tensor, ...]]  # input set label -> inputs in name order
    reference: dict[str, tuple[torch.Tensor, ...]]  # label -> eager fp32 outputs
    extra_atol: dict[str, list[float]]  # label -> eager's own run-to-run difference per output
    eval: EvalSet | None = None
    eval_reference: dict[str, torch.Tensor] | None = None
    reference_score: float | None = None
    user_files: dict[str, str] = dataclasses.field(default_factory=dict)
    calibration: tuple[torch.Tensor, ...] | None = None  # samples for quantization passes
    train: TrainSet | None = None  # data and loss for QAT
    batch_axes: list[int | None] = dataclasses.field(default_factory=list)  # per output (validate.batch_axes)

    def save(self, path: Path) -> None:
        path.write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: Path) -> "Bundle":
        return cls.from_bytes(Path(path).read_bytes())

    def to_bytes(self) -> bytes:
        # Not dataclasses.asdict: it would deep-copy the module and flatten the EvalSet.
        buffer = io.BytesIO()
        torch.save({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, payload: bytes) -> "Bundle":
        return cls(**torch.load(io.BytesIO(payload), weights_only=False))
