"""Where a model could run, for the projection: published peaks per target (`targets.json`,
dated, with sources) and this machine's measured ones (hone.hardware.peaks, `hone doctor`).

A target gives, per dtype, the peak FLOP/s (OP/s for int8) a kernel could reach, the memory
bandwidth, the memory it holds, the fixed cost an eager op pays at least (an assumption, said
as one), and the instance it is priced as. Published figures are ceilings: a projection from
them is a lower bound on latency, never a measurement.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from hone.cost.pricing import Price
from hone.cost.table import PriceTable, read_json
from hone.errors import InputError

SCHEMA = "hone.targets/1"
DEFAULT_TARGETS = Path(__file__).with_name("targets.json")
TERA, GIGA, GIB = 1e12, 1e9, 2**30
THIS_MACHINE = "this machine"
# Eager CPU dispatch per aten call, at least (assumption; the profiler reads calls under 20 µs
# as possibly dispatch-dominated, and the shipped CPU targets use the same figure).
CPU_OVERHEAD_S = 2e-6
DTYPE_ALIASES = {"uint8": "int8", "qint8": "int8", "quint8": "int8"}
LOW_PRECISION = ("bfloat16", "float16", "int8")


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    label: str
    kind: str  # "gpu" | "cpu"
    peak_flops: dict[str, float]  # dtype -> FLOP/s (OP/s for int8)
    bandwidth: float  # bytes/s
    memory_bytes: float | None
    overhead_s: float  # fixed cost per op call (launch on a GPU, dispatch on a CPU)
    instance: str = ""
    usd_per_hour: float | None = None  # per GPU on a GPU instance; None: no price
    price_note: str = ""  # how usd_per_hour was derived ("p5.48xlarge / 8 GPUs")
    basis: dict[str, str] = dataclasses.field(default_factory=dict)  # where each figure comes from
    source: str = ""
    as_of: str = ""
    measured: bool = False  # this machine's measured peaks, not published ones

    def peak(self, dtype: str) -> tuple[float, bool]:
        """(FLOP/s for ops on `dtype`, whether a lower precision fell back to the float32 rate).
        A dtype without a figure (indices, masks, bf16 on a T4) runs at the float32 rate."""
        key = DTYPE_ALIASES.get(dtype, dtype)
        if key in self.peak_flops:
            return self.peak_flops[key], False
        return self.peak_flops["float32"], key in LOW_PRECISION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_targets(prices: PriceTable, path: str | Path | None = None) -> list[Target]:
    """The targets at `path` (default: the shipped table), each priced from `prices`."""
    where = Path(path) if path is not None else DEFAULT_TARGETS
    data = read_json(where, "targets table")
    if not isinstance(data, dict) or not isinstance(data.get("targets"), list) or data.get("schema", SCHEMA) != SCHEMA:
        raise InputError(f"targets table {where}: expected {{'schema': {SCHEMA!r}, 'targets': [...]}}",
                         hint=f"see {DEFAULT_TARGETS}")
    return [_target(raw, i, str(where), prices) for i, raw in enumerate(data["targets"], start=1)]


def _target(raw: Any, index: int, path: str, prices: PriceTable) -> Target:
    where = f"targets table {path}: row {index}" + (f" ({raw.get('name')})" if isinstance(raw, dict) else "")
    try:
        peaks = {str(k): float(v) * TERA for k, v in raw["peak_tflops"].items()}
        name, kind = str(raw["name"]), str(raw["kind"])
        bandwidth = float(raw["bandwidth_gbs"]) * GIGA
        memory = float(raw["memory_gib"]) * GIB if raw.get("memory_gib") is not None else None
        overhead = float(raw["overhead_us_per_op"]) * 1e-6
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{where}: needs name, kind, peak_tflops (with float32), bandwidth_gbs and "
                         f"overhead_us_per_op as numbers ({type(exc).__name__}: {exc})") from None
    if kind not in ("gpu", "cpu"):
        raise InputError(f"{where}: kind must be gpu or cpu, not {kind!r}")
    if "float32" not in peaks or any(not (math.isfinite(v) and v > 0) for v in (*peaks.values(), bandwidth)) \
            or overhead < 0:
        raise InputError(f"{where}: peaks (float32 among them) and bandwidth must be positive, overhead >= 0")
    instance = str(raw.get("instance") or "")
    usd, note = None, "no instance named: no price"
    if instance:
        row = next((r for r in prices.instances if r.name == instance), None)
        if row is None:
            note = f"{instance} is not in the price table {prices.path}: no price"
        else:
            usd = row.usd_per_gpu_hour if kind == "gpu" else row.usd_per_hour
            note = (f"{instance} ${row.usd_per_hour:.4g}/h / {row.gpu_count} GPUs" if kind == "gpu" and row.gpu_count > 1
                    else f"{instance} ${row.usd_per_hour:.4g}/h") + f", as of {row.as_of}"
    return Target(name, str(raw.get("label") or name), kind, peaks, bandwidth, memory, overhead, instance, usd, note,
                  {str(k): str(v) for k, v in (raw.get("basis") or {}).items()}, str(raw.get("source", "")),
                  str(raw.get("as_of", "")))


def this_machine(hardware: dict[str, Any], price: Price | None = None) -> Target | None:
    """This machine as a target, from the peaks `hone doctor` measured (Hardware.to_dict()'s
    "peaks"); None when none were measured."""
    peaks = hardware.get("peaks") or {}
    try:
        fp32, bandwidth = float(peaks["fp32_gflops"]) * GIGA, float(peaks["bandwidth_gbs"]) * GIGA
    except (KeyError, TypeError, ValueError):
        return None
    flops = {"float32": fp32}
    if peaks.get("bf16_gflops"):
        # The profiler's roofline puts float16 on the bf16 units too (one measurement for both).
        flops["bfloat16"] = flops["float16"] = float(peaks["bf16_gflops"]) * GIGA
    if peaks.get("int8_gops"):
        flops["int8"] = float(peaks["int8_gops"]) * GIGA
    memory = hardware.get("memory_bytes")
    threads = peaks.get("threads")
    return Target(
        THIS_MACHINE, f"this machine ({hardware.get('cpu_name') or 'CPU'}, peaks measured at {threads} threads)", "cpu",
        flops, bandwidth, float(memory) if memory else None, CPU_OVERHEAD_S,
        instance=price.instance if price else "", usd_per_hour=price.usd_per_hour if price else None,
        price_note=price.describe() if price else "no price: --instance or --price-per-hour",
        basis={"peaks": f"measured by hone doctor at {threads} threads ({peaks.get('measured_at', 'date unknown')}): "
                        "GEMM per dtype, copy bandwidth",
               "overhead": "assumption: an eager aten call's dispatch costs at least ~2 us"},
        measured=True,
    )
