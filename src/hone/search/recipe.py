"""A Recipe is a chain of pass configs ending in a runtime config, e.g.
[OnnxExport] -> OnnxRuntime(ep="cpu"). It is data: the store saves it, a worker rebuilds it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from hone.config import Config


@dataclasses.dataclass(frozen=True)
class Step:
    name: str  # registry key of the pass or runtime
    config: Config

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "config": self.config.to_dict()}


@dataclasses.dataclass(frozen=True)
class Recipe:
    label: str  # short name for tables: "inductor", "onnxruntime", "bf16+inductor"
    passes: tuple[Step, ...]
    runtime: Step
    origin: str = ""  # why the planner proposed it (the finding behind it)
    compute_dtype: str = "float32"  # what it computes in; decides the tolerance
    # Expected worker wall time relative to the eager baseline's (build, compile, tuning): the
    # time budget plans with it. Not part of the key: it changes nothing that is built.
    cost: float = 1.0
    # The reference every speedup is measured against (eager fp32); marked here, not by label.
    baseline: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "passes": [s.to_dict() for s in self.passes],
            "runtime": self.runtime.to_dict(),
            "origin": self.origin,
            "compute_dtype": self.compute_dtype,
            "cost": self.cost,
            "baseline": self.baseline,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Recipe":
        from hone.registry import PASSES, RUNTIMES

        def step(registry, d):
            return Step(d["name"], registry.get(d["name"]).Config.from_dict(d["config"]))

        return cls(
            label=data["label"],
            passes=tuple(step(PASSES, d) for d in data["passes"]),
            runtime=step(RUNTIMES, data["runtime"]),
            origin=data.get("origin", ""),
            compute_dtype=data.get("compute_dtype", "float32"),
            cost=data.get("cost", 1.0),
            # Runs stored before the field existed marked the baseline by its label.
            baseline=data.get("baseline", data["label"] == "eager" and not data["passes"]),
        )

    @property
    def key(self) -> str:
        """Stable identity of what is built (label and origin excluded): resume matches on it."""
        body = {"passes": [s.to_dict() for s in self.passes], "runtime": self.runtime.to_dict()}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def kept_float(self) -> tuple[str, ...]:
        """Layers its quantization step keeps in float (the accuracy fallback's or the user's)."""
        return tuple(n for s in self.passes for n in s.config.to_dict().get("keep_float", ()))

    @property
    def approximates(self) -> bool:
        """Whether a step changes what the model computes beyond rounding (pruning)."""
        from hone.registry import PASSES

        return any(PASSES.get(s.name).approximates for s in self.passes)

    def describe(self) -> str:
        return " -> ".join([s.name for s in self.passes] + [self.runtime.name])
