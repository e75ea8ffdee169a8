"""The outcome of validating one candidate: per-output tensor checks and the task metric."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class OutputCheck:
    name: str
    max_abs_err: float
    max_rel_err: float
    cosine: float
    atol: float
    rtol: float
    nonfinite: int  # NaN/Inf count in the candidate's output
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class MetricCheck:
    name: str
    value: float  # the candidate's score
    reference: float  # eager fp32's score on the same data
    budget: float  # allowed drop, absolute
    passed: bool

    @property
    def delta(self) -> float:
        return self.value - self.reference

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "delta": self.delta}


@dataclasses.dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str  # one line: what failed, or the largest error that passed
    compute_dtype: str
    outputs: tuple[OutputCheck, ...] = ()
    metric: MetricCheck | None = None
    tensor_check_advisory: bool = False  # quantized candidates: the metric decides

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "compute_dtype": self.compute_dtype,
            "outputs": [o.to_dict() for o in self.outputs],
            "metric": self.metric.to_dict() if self.metric else None,
            "tensor_check_advisory": self.tensor_check_advisory,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Verdict":
        metric = data.get("metric")
        if metric:
            metric = MetricCheck(**{k: v for k, v in metric.items() if k != "delta"})
        return cls(
            passed=data["passed"],
            reason=data["reason"],
            compute_dtype=data["compute_dtype"],
            outputs=tuple(OutputCheck(**o) for o in data.get("outputs", ())),
            metric=metric,
            tensor_check_advisory=data.get("tensor_check_advisory", False),
        )
