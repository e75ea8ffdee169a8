"""One optimization run: what was run on which machine, every candidate's result, the winner.

The winner is exported as the artifact its worker measured (saved in the run's artifact
directory, next to the store, or in a temporary directory this result owns): nothing is
rebuilt, and the copy is checked against the checksum stored with the result."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from hone.search.constraints import Constraints
from hone import scratch
from hone.search.result import CandidateResult
from hone.search.select import Selection, select

# Temporary artifact directories of sweeps without a store, until an OptimizeResult of their
# results claims one (it is deleted with that result, or at exit when nothing claims it).
_TEMPORARY: dict[Path, tempfile.TemporaryDirectory] = {}


def temporary_artifacts() -> Path:
    """A new temporary artifact directory for a sweep (see claim_artifacts)."""
    holder = tempfile.TemporaryDirectory(prefix=scratch.prefix("artifacts"))
    path = Path(holder.name).resolve()
    _TEMPORARY[path] = holder
    return path


def discard_temporary(path: Path) -> bool:
    """Delete `path` now if it is an unclaimed temporary artifact directory; False otherwise."""
    holder = _TEMPORARY.pop(Path(path).resolve(), None)
    if holder is None:
        return False
    holder.cleanup()
    return True


def claim_artifacts(results: list[CandidateResult]) -> tempfile.TemporaryDirectory | None:
    """The temporary artifact directory these results' artifacts live in, handed over to the
    caller (who then owns it: it goes when the holder is collected)."""
    for r in results:
        if r.artifact and r.artifact.get("dir"):
            where = Path(r.artifact["dir"]).resolve()
            for root in list(_TEMPORARY):
                if root in where.parents:
                    return _TEMPORARY.pop(root)
    return None


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
    model_id: str = ""  # search.history.model_identity: module structure and input specs
    history: dict[str, Any] = dataclasses.field(default_factory=dict)  # what earlier runs told this one
    # The previous winner of this model here ({"key", "run"}): it stays the winner unless beaten
    # beyond noise (search.select), so a stored run re-selects what it reported.
    incumbent: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None  # the profile summary and advice the plan followed
    pruned: dict[str, str] = dataclasses.field(default_factory=dict)  # recipe label -> why not planned
    warnings: list[str] = dataclasses.field(default_factory=list)  # said loudly in every report
    # How the model was loaded (Workload.provenance): its file format, the --trust-pickle
    # opt-in, shapes given for dynamic dimensions, where calibration and eval data came from.
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    # The serving sweep's curves and chosen configuration (serve.sweep.ServeSweep.to_dict()),
    # when the run was asked for one (--serve-sweep); None otherwise.
    serving: dict[str, Any] | None = None
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
    # The loaded workload, kept on results returned by optimize(); None on runs loaded from the store.
    workload: Any = dataclasses.field(default=None, repr=False, compare=False)
    # The temporary directory holding the winner's artifact when the run had no store.
    artifacts_owner: Any = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_results(cls, run: RunInfo, results: list[CandidateResult]) -> "OptimizeResult":
        constraints = Constraints.from_dict(run.settings.get("constraints"))  # as the run was asked
        return cls(run, results, select(results, run.incumbent, constraints), artifacts_owner=claim_artifacts(results))

    @property
    def best(self) -> list[CandidateResult]:
        """The winning recipe's results, one per input set (empty when nothing passed)."""
        if self.selection.best is None:
            return []
        return [r for r in self.results if r.recipe.key == self.selection.best.key]

    def build_count(self) -> tuple[int, int]:
        """(builds, candidates): how many builds served how many candidates (recipe x input
        set) that ran in a worker; a build reused at another set serves several."""
        ran = [r for r in self.results if r.build is not None]
        return len({(r.recipe.key, r.build["built_for"]) for r in ran}), len(ran)  # type: ignore[index]

    def winner_artifact(self, input_set: str | None = None, label: str | None = None) -> tuple[CandidateResult, dict[str, Any]]:
        """The winner's (or the candidate `label`'s) result at `input_set` (default: the largest,
        the last) and the artifact its worker saved; raises when there is none (the runtime's
        reason when it cannot save)."""
        from hone.errors import HoneError, InputError, Unsupported

        if self.selection.best is None:
            raise HoneError("no candidate passed validation; there is nothing to export")
        if label is None or label == self.selection.best.label:
            label, chosen_results, who = self.selection.best.label, self.best, "the winner"
        else:
            chosen_results, who = [r for r in self.results if r.recipe.label == label], "candidate"
            if not chosen_results:
                raise InputError(f"no candidate {label!r} in this run")
        labels = list(self.run.input_sets) or [r.input_set for r in chosen_results]
        chosen = input_set if input_set is not None else labels[-1]
        result = next((r for r in chosen_results if r.input_set == chosen), None)
        if result is None:
            raise InputError(f"no input set {chosen!r} in this run", hint=f"it has {', '.join(labels)}")
        label = f"{who} {label}"
        artifact = result.artifact
        if not artifact:
            raise HoneError(f"{label} has no saved artifact at {chosen}",
                            hint="runs recorded before artifacts were saved by their workers cannot be exported; run again")
        if "unsaved" in artifact:
            raise Unsupported(f"{label} cannot be exported: {artifact['unsaved']}")
        if not Path(artifact["dir"]).is_dir():
            raise HoneError(
                f"{label}'s artifact {artifact['dir']} no longer exists",
                hint="a run without a store keeps its artifacts only while its OptimizeResult lives; use a store to keep them",
            )
        return result, artifact

    def runner(self, input_set: str | None = None):
        """The winner as its worker measured it, loaded (nothing is rebuilt) from its saved
        artifact for `input_set` (default: the largest) after checking it: call it with the
        inputs in input-name order."""
        from hone import export

        result, artifact = self.winner_artifact(input_set)
        return export.load(artifact["dir"], threads=self.run.threads, device=self.run.device, sha256=artifact["sha256"])

    def export(self, directory: "str | Path", input_set: str | None = None, label: str | None = None) -> Path:
        """Copy the winner's (or the kept candidate `label`'s) artifact for `input_set` (default:
        the largest), checked against its stored checksum, with its manifest.json into
        `directory`; `hone.load(directory)` reads it back."""
        from hone import export

        result, artifact = self.winner_artifact(input_set, label)
        return export.copy_artifact(
            artifact["dir"], directory, artifact["sha256"],
            extra={"model": self.run.model, "hardware": self.run.fingerprint, "run_id": self.run.run_id,
                   "input_set": result.input_set, **export.deploy_record(self.run, result)},
        )

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
            "builds": dict(zip(("builds", "candidates"), self.build_count())),
        }
