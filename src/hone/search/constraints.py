"""What the user asks of the winner besides correctness: an objective and hard limits.

    objective   latency (default): the highest geometric-mean speedup over the input sets
                throughput: the most samples a second at the input set that gives the most
                memory: the lowest peak memory, then the fastest
                cost: the lowest $ per 1M inferences at the best input set, at `price` (hone.cost);
                      on one machine one price divides every throughput, so it orders as throughput
                      does: what it adds is the figure, and the price kept with the run
    max_p99_ms  every input set's p99 at or under it
    max_memory_mb  the worker's peak memory at every set at or under it (RSS; device memory on GPU)

The accuracy budget stays with validation: a candidate over it is `wrong_answer` and never
selected. Limits here are judged on the measured figures of candidates that passed it; when none
meets them, selection still names the closest one as best effort, with what it misses and by
how much, so the user is never left with nothing. The constraints are stored with the run's
settings, and a stored run re-selects with them.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from hone.cost.pricing import Price
from hone.errors import InputError

if TYPE_CHECKING:
    from hone.bench.measurement import Measurement
    from hone.search.result import CandidateResult

OBJECTIVES = ("latency", "throughput", "memory", "cost")
MIB = 1024 * 1024


def peak_bytes(m: "Measurement") -> int | None:
    """The memory a candidate needs: device memory on a GPU, else the worker's peak RSS."""
    return m.peak_device_bytes if m.peak_device_bytes is not None else m.peak_rss_bytes


@dataclasses.dataclass(frozen=True)
class Miss:
    """One limit one candidate exceeds at one input set."""

    limit: str  # "max_p99_ms" | "max_memory_mb"
    input_set: str
    value: float
    bound: float
    unit: str

    @property
    def excess(self) -> float:
        """How far over, as a share of the bound (0.23: 23 % over)."""
        return self.value / self.bound - 1 if self.bound > 0 else float("inf")

    def __str__(self) -> str:
        name = {"max_p99_ms": "p99", "max_memory_mb": "peak memory"}[self.limit]
        return f"{name} {self.value:.4g} {self.unit} at {self.input_set} > {self.bound:g} {self.unit} (+{self.excess:.0%})"


@dataclasses.dataclass(frozen=True)
class Constraints:
    objective: str = "latency"
    max_p99_ms: float | None = None
    max_memory_mb: float | None = None
    # What this machine's time costs (hone.cost.pricing): the $/1M column and the cost objective.
    # Stored with the constraints, so a stored run is priced and re-selected as it was.
    price: Price | None = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise InputError(f"objective must be one of {', '.join(OBJECTIVES)}, not {self.objective!r}")
        for name in ("max_p99_ms", "max_memory_mb"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
                raise InputError(f"{name} must be a positive number, not {value!r}")

    @property
    def limits(self) -> bool:
        return self.max_p99_ms is not None or self.max_memory_mb is not None

    @property
    def default(self) -> bool:
        """Today's selection exactly: the fastest by latency, no limits."""
        return self.objective == "latency" and not self.limits

    def misses(self, per_set: "dict[str, CandidateResult]") -> list[Miss]:
        """Every limit this recipe's measurements exceed, by input set. A limit the measurement
        cannot judge (no memory figure) is not a miss: it is said in describe_unknown."""
        found = []
        for label, r in sorted(per_set.items()):
            m = r.measurement
            if m is None or not m.n:
                continue
            if self.max_p99_ms is not None and m.p99 * 1e3 > self.max_p99_ms:
                found.append(Miss("max_p99_ms", label, m.p99 * 1e3, self.max_p99_ms, "ms"))
            peak = peak_bytes(m)
            if self.max_memory_mb is not None and peak is not None and peak / MIB > self.max_memory_mb:
                found.append(Miss("max_memory_mb", label, peak / MIB, self.max_memory_mb, "MiB"))
        return found

    def unknown(self, per_set: "dict[str, CandidateResult]") -> str:
        """Why a limit could not be judged for this recipe ("" when every one could)."""
        if self.max_memory_mb is not None and any(
                r.measurement is not None and peak_bytes(r.measurement) is None for r in per_set.values()):
            return "no peak memory was measured, so --max-memory-mb could not be checked"
        return ""

    def describe(self) -> str:
        parts = [f"objective {self.objective}"]
        if self.max_p99_ms is not None:
            parts.append(f"p99 <= {self.max_p99_ms:g} ms")
        if self.max_memory_mb is not None:
            parts.append(f"peak memory <= {self.max_memory_mb:g} MiB")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Constraints":
        if not data:
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("price"), dict):
            values["price"] = Price.from_dict(values["price"])
        return cls(**values)


def throughput(per_set: "dict[str, CandidateResult]") -> float:
    """Samples a second at the input set that gives the most (usually the largest batch)."""
    rates = [r.measurement.throughput for r in per_set.values() if r.measurement is not None and r.measurement.n]
    return max(rates) if rates else 0.0


def peak(per_set: "dict[str, CandidateResult]") -> float:
    """The largest peak memory over the sets, in bytes (inf when none was measured: it cannot
    win on memory)."""
    found = [peak_bytes(r.measurement) for r in per_set.values() if r.measurement is not None]
    known = [p for p in found if p is not None]
    return float(max(known)) if known else float("inf")
