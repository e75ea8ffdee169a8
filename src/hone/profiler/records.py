"""What a profile holds. Plain data: the report renders it, the planner reads its advice, the
store can keep it (to_dict)."""

from __future__ import annotations

import dataclasses
from typing import Any

BOUNDS = ("compute", "memory", "overhead")


@dataclasses.dataclass(frozen=True)
class OpStat:
    """One aten op type (aggregated) or one individual call (calls == 1)."""

    name: str  # "aten::addmm"
    calls: int
    time_s: float  # self time on CPU, kernel time on GPU; summed over calls
    flops: float  # 2 per multiply-accumulate (torch.utils.flop_counter's convention)
    bytes: float  # inputs + outputs (weights are inputs), from shapes and dtypes
    dtype: str = ""  # dtype of the op's main input ("float32", "bfloat16", ...)
    unit: str = ""  # what ran it: "oneDNN avx512_core_bf16", "MKL avx512", "tensor core", "reference", ""
    shapes: str = ""  # input shapes, for individual calls
    bound: str = ""  # one of BOUNDS
    pct_of_peak: float | None = None  # attained share of the roof that bounds it (compute or bandwidth)

    @property
    def intensity(self) -> float | None:
        """Arithmetic intensity, FLOP per byte; None for ops that move no bytes."""
        return self.flops / self.bytes if self.bytes else None

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.time_s if self.time_s > 0 else 0.0

    @property
    def bytes_per_s(self) -> float:
        return self.bytes / self.time_s if self.time_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "intensity": self.intensity,
            "flops_per_s": self.flops_per_s,
            "bytes_per_s": self.bytes_per_s,
        }


@dataclasses.dataclass(frozen=True)
class BatchPoint:
    batch_size: int
    latency_s: float  # median latency of one forward at this batch size

    @property
    def per_sample_s(self) -> float:
        return self.latency_s / self.batch_size


@dataclasses.dataclass(frozen=True)
class TensorSize:
    name: str  # parameter name, or "activation <op> #k"
    kind: str  # "weight" | "activation"
    bytes: int
    shape: tuple[int, ...]
    dtype: str


@dataclasses.dataclass(frozen=True)
class MemoryProfile:
    peak_by_stage: dict[str, int]  # "load", "first call", "steady state" -> peak bytes (RSS or CUDA)
    weights_bytes: int
    largest: tuple[TensorSize, ...]  # largest tensors, weights and activations together


@dataclasses.dataclass(frozen=True)
class Finding:
    """Where the time goes, as the planner reads it: one bound and its share of wall time."""

    kind: str  # "overhead" | "memory" | "compute" (plugin.FINDINGS)
    share: float
    text: str  # "memory-bound: 71% of wall time in ops below the ridge point ..."
    # Units that pay off here for this finding -> why ("bf16": "this CPU has AMX ..."): a step's
    # claim that names a unit holds only where it is listed.
    units: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Advice:
    """One step that addresses a finding, for the user (hone profile) and the run record. The
    planner ranks whole recipes from the findings and every step's claims; advice names steps,
    never recipes."""

    step: str  # the step variant's tag ("bf16", "inductor", "pt2e-int8")
    finding: str  # "memory-bound: 71 % of op time in ops below the ridge point"
    reason: str  # why this step addresses the finding
    rank: int  # 1 = try first


@dataclasses.dataclass
class Profile:
    model: str
    input_set: str  # the input set profiled ("bs8")
    device: str
    threads: int
    wall_s: float  # median latency of the whole forward
    op_time_s: float  # sum of op self times; overhead = wall - op time
    ops: list[OpStat]  # per op type, by time, descending
    top_ops: list[OpStat]  # individual calls, by time, descending
    shares: dict[str, float]  # bound -> share of wall time (compute, memory, overhead; sums to 1)
    verdict: str  # the largest share's bound: "compute" | "memory" | "overhead"
    scaling: list[BatchPoint] = dataclasses.field(default_factory=list)
    memory: MemoryProfile | None = None
    findings: list[Finding] = dataclasses.field(default_factory=list)
    advice: list[Advice] = dataclasses.field(default_factory=list)
    peaks: dict[str, Any] = dataclasses.field(default_factory=dict)  # Peaks.to_dict() used for the roofline
    notes: list[str] = dataclasses.field(default_factory=list)
    # Per profiled input set, a compact per-op-type record (hone.cost.projection.set_record):
    # what a run keeps so that `hone cost` can project it later. Filled by hone.optimize.
    per_set: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def overhead_s(self) -> float:
        return max(self.wall_s - self.op_time_s, 0.0)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["ops"] = [o.to_dict() for o in self.ops]
        data["top_ops"] = [o.to_dict() for o in self.top_ops]
        data["scaling"] = [{"batch_size": p.batch_size, "latency_s": p.latency_s, "per_sample_s": p.per_sample_s} for p in self.scaling]
        data["overhead_s"] = self.overhead_s
        return data
