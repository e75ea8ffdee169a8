"""One optimization run: what was run on which machine, every candidate's result, the winner."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from hone.search.result import CandidateResult
from hone.search.select import Selection, select


@dataclasses.dataclass
class RunInfo:
    model: str  # the model spec or "<live module>"
    workload: str  # the workload's display name
    task: str
    device: str
    threads: int
    input_sets: dict[str, list[str]]  # label -> ["input_ids: int64[8, 128]", ...]
    output_names: list[str]
    hardware: dict[str, Any]  # Hardware.to_dict()
    fingerprint: str  # hardware fingerprint
    versions: dict[str, str]  # every library that could take part, and its version
    settings: dict[str, Any]  # options of the run (timeouts, budgets, ...)
    eval_metric: str | None = None
    reference_scores: dict[str, float] = dataclasses.field(default_factory=dict)  # fp32 metric per set
    nondeterministic: bool = False  # eager fp32 twice gave different outputs
    fp32_error: dict[str, list[float]] = dataclasses.field(default_factory=dict)  # |eager fp32 - fp64| per set
    fp64_skipped: str | None = None  # why tolerances are not calibrated against float64
    output_batch_axes: dict[str, int | None] = dataclasses.field(default_factory=dict)  # None: no batch axis
    batch_axes_note: str | None = None  # set when the axes were assumed, not inferred or declared
    profile: dict[str, Any] | None = None  # the profile summary and advice the plan followed
    pruned: dict[str, str] = dataclasses.field(default_factory=dict)  # recipe label -> why not planned
    warnings: list[str] = dataclasses.field(default_factory=list)  # said loudly in every report
    run_id: int | None = None
    created_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunInfo":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclasses.dataclass
class OptimizeResult:
    run: RunInfo
    results: list[CandidateResult]
    selection: Selection
    # The loaded workload, kept on results returned by optimize() so the winner can be rebuilt
    # in this process; None on runs loaded from the store.
    workload: Any = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_results(cls, run: RunInfo, results: list[CandidateResult]) -> "OptimizeResult":
        return cls(run, results, select(results))

    @property
    def best(self) -> list[CandidateResult]:
        """The winning recipe's results, one per input set (empty when nothing passed)."""
        if self.selection.best is None:
            return []
        return [r for r in self.results if r.recipe.key == self.selection.best.key]

    def runner(self, input_set: str | None = None):
        """Build the winning recipe in this process and return its Runner: call it with the
        inputs in input-name order. Shape-specialising backends are built for `input_set`."""
        import tempfile

        # Build products (an exported ONNX file) are read while building; the runner holds what it
        # needs in memory afterwards, so the directory goes with the build.
        with tempfile.TemporaryDirectory(prefix="hone-best-") as workdir:
            runner, _ = self._build_best(input_set, workdir)
        return runner

    def export(self, directory: "str | Path", input_set: str | None = None) -> "Path":
        """Build the winner in this process and save its deployable artifact (the runtime's own
        format) with a manifest.json into `directory`; `hone.load(directory)` reads it back."""
        import tempfile

        from hone import export

        with tempfile.TemporaryDirectory(prefix="hone-export-") as workdir:
            runner, inputs = self._build_best(input_set, workdir)
            return export.save(
                runner, self.selection.best, directory,
                input_names=self.workload.input_names, output_names=self.run.output_names, example_inputs=inputs,
                extra={"model": self.run.model, "hardware": self.run.fingerprint, "run_id": self.run.run_id,
                       "input_set": input_set or self.workload.input_sets[-1].label},
            )

    def _build_best(self, input_set: str | None, workdir: str):
        from pathlib import Path

        from hone.errors import HoneError
        from hone.plugin import BuildContext
        from hone.search.build import build_recipe

        if self.selection.best is None:
            raise HoneError("no candidate passed validation; there is nothing to build")
        if self.workload is None:
            raise HoneError("this result was loaded from the store; rebuilding needs the model (run optimize)")
        chosen = self.workload.input_set(input_set) if input_set else self.workload.input_sets[-1]
        ctx = BuildContext(
            chosen.as_args(), self.workload.input_names, self.run.output_names,
            Path(workdir), self.run.threads, self.run.device,
            output_batch_axes=[self.run.output_batch_axes.get(n, 0) for n in self.run.output_names],
        )
        runner, _, _ = build_recipe(self.selection.best, self.workload.module, ctx)
        return runner, chosen.as_args()

    def table(self) -> str:
        from hone.report.console import render_text

        return render_text(self)

    def to_dict(self) -> dict[str, Any]:
        from hone.search.select import payoffs

        return {
            "run": self.run.to_dict(),
            "candidates": [r.to_dict() for r in self.results],
            "selection": self.selection.to_dict(),
            "payoff": [p.to_dict() for p in payoffs(self.results)],
        }
