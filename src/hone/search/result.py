"""What one candidate (a recipe at one input set) came to, whatever happened to it.

A worker builds a recipe once and runs it at every input set its runner serves, rebuilding
only for a set it does not; each per-set result says which build served it (`build`), and
the winner's results point at the artifact that build saved (`artifact`)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any

from hone.bench.measurement import Measurement
from hone.bench.paired import PairedSpeedup
from hone.search.recipe import Recipe
from hone.validate.verdict import Verdict


class Status(str, enum.Enum):
    OK = "ok"
    WRONG_ANSWER = "wrong_answer"  # failed validation: can never be selected
    CRASHED = "crashed"  # raised, or died by a signal
    TIMEOUT = "timeout"
    OOM = "oom"
    UNSUPPORTED = "unsupported"  # missing dependency, capability or op

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass
class CandidateResult:
    recipe: Recipe
    input_set: str  # InputSet.label
    status: Status
    reason: str  # always set: why it failed, or what it passed with
    verdict: Verdict | None = None
    measurement: Measurement | None = None
    runner_info: dict[str, Any] = dataclasses.field(default_factory=dict)  # what really ran
    # Worker time spent on this input set: the first set of a worker includes its start, the
    # load and the build; a later set its own first call, validation and timing (and a rebuild).
    wall_s: float = 0.0
    log_tail: str = ""  # stderr tail or traceback, for crashed candidates
    # The build that served this set, within its worker: {"index": k, "built_for": set label,
    # "build_s": seconds, "reused": built for an earlier set and reused here}. None: no build ran
    # (unavailable here, or the worker died before building).
    build: dict[str, Any] | None = None
    summary: list[str] = dataclasses.field(default_factory=list)  # the runner's notes for reports
    # The saved product of that build: {"dir", "sha256", "checksums", "files", "input_sets"}, or
    # {"unsaved": why} when the runtime cannot save it. None: not saved (it could not win when
    # it ran: slower than the best so far, or failed somewhere).
    artifact: dict[str, Any] | None = None
    # Set when this failure was not run but known: the id of the run that measured it (same
    # recipe, model, machine and library versions; search.history).
    known_from: int | None = None
    # How far an ok candidate got: "screened" (its short screening measurement was clearly
    # slower than the best so far: that is its figure) or "confirmed" (measured in full), and why.
    stage: str = ""
    stage_reason: str = ""
    # A quantized candidate that missed the accuracy budget: its screening p50, so the fallback
    # knows whether a retry could beat the best (never a figure to select by).
    screen_p50_s: float | None = None
    # A confirmed candidate timed against eager in alternating windows in its own worker, seconds
    # apart (bench.paired): the speedup that selection uses, drift cancelled, with its interval.
    paired: PairedSpeedup | None = None
    # Where this set's worker time went: seconds per worker stage (load, build, first call,
    # validate, screen, measure, pair, save), summing to about `wall_s`.
    stages_s: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe.to_dict(),
            "recipe_key": self.recipe.key,
            "input_set": self.input_set,
            "status": self.status.value,
            "reason": self.reason,
            "verdict": self.verdict.to_dict() if self.verdict else None,
            "measurement": self.measurement.to_dict() if self.measurement else None,
            "runner_info": self.runner_info,
            "wall_s": self.wall_s,
            "log_tail": self.log_tail,
            "build": self.build,
            "summary": list(self.summary),
            "artifact": self.artifact,
            "known_from": self.known_from,
            "stage": self.stage,
            "stage_reason": self.stage_reason,
            "screen_p50_s": self.screen_p50_s,
            "paired": self.paired.to_dict() if self.paired else None,
            "stages_s": dict(self.stages_s),
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], recipe_from: Callable[[dict[str, Any]], Recipe] = Recipe.from_dict
    ) -> "CandidateResult":
        """`recipe_from` rebuilds the recipe; the store passes one that needs no plugins."""
        return cls(
            recipe=recipe_from(data["recipe"]),
            input_set=data["input_set"],
            status=Status(data["status"]),
            reason=data["reason"],
            verdict=Verdict.from_dict(data["verdict"]) if data.get("verdict") else None,
            measurement=Measurement.from_dict(data["measurement"]) if data.get("measurement") else None,
            runner_info=data.get("runner_info") or {},
            wall_s=data.get("wall_s", 0.0),
            log_tail=data.get("log_tail", ""),
            build=data.get("build"),
            summary=list(data.get("summary") or []),
            artifact=data.get("artifact"),
            known_from=data.get("known_from"),
            stage=data.get("stage", ""),
            stage_reason=data.get("stage_reason", ""),
            screen_p50_s=data.get("screen_p50_s"),
            paired=PairedSpeedup.from_dict(data["paired"]) if data.get("paired") else None,
            stages_s=dict(data.get("stages_s") or {}),
        )
