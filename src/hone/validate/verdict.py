"""The outcome of validating one candidate: per-output tensor checks and the task metric."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class AccuracyBudget:
    """How far the task metric may fall below fp32's: `value` absolute (0.01 = one point of
    top-1) or, with `relative`, a share of fp32's own score (0.01 = 1 % of it)."""

    value: float = 0.01
    relative: bool = False

    def __post_init__(self) -> None:
        from hone.errors import InputError

        if not 0 <= self.value < 1:
            kind = "a share of the fp32 score" if self.relative else "an absolute drop of the metric"
            raise InputError(f"accuracy budget {self.value} must be in [0, 1) ({kind})")

    @classmethod
    def parse(cls, spec: "float | str | AccuracyBudget") -> "AccuracyBudget":
        """0.01 or "0.01": absolute; "1%": relative to the fp32 score."""
        from hone.errors import InputError

        if isinstance(spec, AccuracyBudget):
            return spec
        text = str(spec).strip()
        try:
            if text.endswith("%"):
                return cls(float(text[:-1]) / 100, relative=True)
            return cls(float(text))
        except ValueError:
            raise InputError(f"accuracy budget {spec!r} is not a number", hint='e.g. 0.01 (absolute) or "1%" (relative)') from None

    def allowed_drop(self, reference: float) -> float:
        return self.value * abs(reference) if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value * 100:g}% of fp32" if self.relative else f"{self.value:g}"


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
    budget: float  # allowed drop, absolute (a relative budget is resolved against `reference`)
    passed: bool
    budget_text: str = ""  # the budget as the user gave it: "0.01", "1% of fp32"
    also: dict[str, float] = dataclasses.field(default_factory=dict)  # reported, not deciding

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

    @property
    def broken(self) -> bool:
        """NaN/Inf or a wrong output shape: a bug, not an accuracy miss (no float layer fixes it)."""
        return any(c.nonfinite or c.max_abs_err == float("inf") for c in self.outputs)

    @property
    def error(self) -> float:
        """How far from fp32, one number to compare candidates of one run by (lower is closer):
        the task metric's distance from fp32's score where there is a metric, else the worst
        output's 1 - cosine similarity."""
        if self.metric is not None:
            return abs(self.metric.delta)
        return max((1.0 - c.cosine for c in self.outputs), default=0.0)

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
