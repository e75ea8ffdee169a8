"""Measurement keeps every raw latency and derives statistics lazily (torch.utils.benchmark's way).

It is immutable: what the worker measured is what the store keeps and the report shows.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
from typing import Any


def _quantile(sorted_times: tuple[float, ...], q: float) -> float:
    """Linear-interpolated quantile of already-sorted data (numpy's default method)."""
    if not sorted_times:
        return float("nan")
    pos = (len(sorted_times) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_times) - 1)
    return sorted_times[lo] + (sorted_times[hi] - sorted_times[lo]) * (pos - lo)


@dataclasses.dataclass(frozen=True)
class Measurement:
    times_s: tuple[float, ...]  # steady-state latency of each call, seconds
    batch_size: int
    threads: int
    timer: str  # "perf_counter" or "cuda_event"
    warmup_calls: int = 0
    build_s: float = 0.0  # build(): passes, export, compile ahead of time
    first_call_s: float = 0.0  # the first inference (includes lazy compilation, e.g. torch.compile)
    peak_rss_bytes: int | None = None  # worker process peak resident memory
    peak_device_bytes: int | None = None  # CUDA peak allocated, on GPU
    noise_warning: str | None = None

    @functools.cached_property
    def _sorted(self) -> tuple[float, ...]:
        return tuple(sorted(self.times_s))

    @property
    def n(self) -> int:
        return len(self.times_s)

    @property
    def p50(self) -> float:
        return _quantile(self._sorted, 0.50)

    @property
    def p10(self) -> float:
        return _quantile(self._sorted, 0.10)

    @property
    def p90(self) -> float:
        return _quantile(self._sorted, 0.90)

    @property
    def p99(self) -> float:
        return _quantile(self._sorted, 0.99)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times_s) if self.times_s else float("nan")

    @property
    def iqr(self) -> float:
        return _quantile(self._sorted, 0.75) - _quantile(self._sorted, 0.25)

    @property
    def rel_iqr(self) -> float:
        return self.iqr / self.p50 if self.p50 > 0 else float("inf")

    @property
    def throughput(self) -> float:
        """Samples per second at the median latency."""
        return self.batch_size / self.p50 if self.p50 > 0 else float("nan")

    def stats(self) -> dict[str, float]:
        return {
            "p50_s": self.p50,
            "p90_s": self.p90,
            "p99_s": self.p99,
            "mean_s": self.mean,
            "iqr_s": self.iqr,
            "rel_iqr": self.rel_iqr,
            "throughput_per_s": self.throughput,
            "n": self.n,
        }

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["times_s"] = list(self.times_s)
        data["stats"] = self.stats()  # derived, stored for readers of the JSON; ignored on load
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Measurement":
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["times_s"] = tuple(kwargs["times_s"])
        return cls(**kwargs)
