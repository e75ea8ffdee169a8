"""What this machine's time costs: the user's request (`Pricing`) and the price it resolves to
(`Price`), which is stored with the run so that `hone report` and `hone cost` price it the same way.

    Pricing()                          the shipped table, the row closest to the probed machine
    Pricing(instance="c7i.large")      that row
    Pricing(usd_per_hour=0.25)         that figure ("your own price")
    Pricing(table="my.json", ...)      a table of your own, same schema (hone.cost.table)

The closest match is an assumption and every report says so: "priced as c7a.large (closest
match: AMD x86, 2 vCPUs); --instance or --price-per-hour to change".
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

from hone.cost.table import PriceTable, closest, load_table
from hone.errors import InputError

CHANGE_HINT = "--instance or --price-per-hour to change"


@dataclasses.dataclass(frozen=True)
class Price:
    """A resolved price of one machine's time (per GPU on a GPU instance)."""

    usd_per_hour: float
    instance: str = ""  # the table row it is priced as ("" for --price-per-hour)
    basis: str = ""  # "closest match: AMD x86, 2 vCPUs" | "--instance" | "--price-per-hour" | "per GPU: ..."
    as_of: str = ""
    source: str = ""
    assumed: bool = False  # the closest match, not the user's word

    def __post_init__(self) -> None:
        if isinstance(self.usd_per_hour, bool) or not isinstance(self.usd_per_hour, (int, float)) \
                or not math.isfinite(self.usd_per_hour) or self.usd_per_hour < 0:
            raise InputError(f"a price per hour must be a finite number >= 0, not {self.usd_per_hour!r}")

    def describe(self) -> str:
        """One line for every report: what it is priced as, and how to change it when assumed."""
        figure = f"${self.usd_per_hour:.4g}/h"
        if self.instance:
            dated = f", list price as of {self.as_of}" if self.as_of else ""
            text = f"priced as {self.instance} ({figure}; {self.basis}{dated})"
        else:
            text = f"priced at {figure} ({self.basis or 'given'})"
        return f"{text}; {CHANGE_HINT}" if self.assumed else text

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Price | None":
        if not data:
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclasses.dataclass(frozen=True)
class Pricing:
    """How to price this machine: at most one of `usd_per_hour` and `instance`; `table` is the
    price table to read (default: the shipped one). Checked when made, before any work."""

    table: str | None = None
    usd_per_hour: float | None = None
    instance: str | None = None

    def __post_init__(self) -> None:
        if self.usd_per_hour is not None and self.instance is not None:
            raise InputError("give --price-per-hour or --instance, not both")
        if self.usd_per_hour is not None:
            Price(self.usd_per_hour)  # raises on a bad figure
        loaded = self.load()  # a bad table or an unknown instance fails here
        if self.instance is not None:
            loaded.get(self.instance)

    def load(self) -> PriceTable:
        return load_table(self.table)

    def resolve(self, hardware: dict[str, Any], device: str = "cpu") -> Price:
        """The price of the machine `hardware` (Hardware.to_dict()) running on `device`."""
        if self.usd_per_hour is not None:
            return Price(float(self.usd_per_hour), basis="--price-per-hour")
        table = self.load()
        if self.instance is not None:
            return _of(table.get(self.instance), "--instance")
        if device.startswith("cuda"):
            return _gpu_match(table, hardware, device)
        found = closest(table, hardware)
        if found is None:
            raise InputError(f"no instance in the price table {table.path} matches this machine "
                             f"({hardware.get('arch', '?')}, {hardware.get('cpu_name', '?')})", hint=CHANGE_HINT)
        row, why = found
        return dataclasses.replace(_of(row, why), assumed=True)


def _of(row, basis: str) -> Price:
    if row.gpu_count:
        basis = f"{basis}; per GPU: ${row.usd_per_hour:.4g}/h / {row.gpu_count} GPUs" if row.gpu_count > 1 else basis
        return Price(row.usd_per_gpu_hour, row.name, basis, row.as_of, row.source)
    return Price(row.usd_per_hour, row.name, basis, row.as_of, row.source)


def _gpu_match(table: PriceTable, hardware: dict[str, Any], device: str) -> Price:
    """The first row whose GPU is this one (by model name: H100, A100, L4, T4 ...), per GPU."""
    index = int(device.split(":")[1]) if ":" in device else 0
    gpus = hardware.get("gpus") or []
    name = str(gpus[index].get("name", "")) if index < len(gpus) and isinstance(gpus[index], dict) else ""
    words = _models(name)
    for row in sorted(table.instances, key=lambda r: (r.gpu_count, r.usd_per_hour)):
        if row.gpu and words & _models(row.gpu):
            return dataclasses.replace(_of(row, f"closest match: {name}"), assumed=True)
    raise InputError(f"no instance in the price table {table.path} has this GPU ({name or 'unknown'})",
                     hint=CHANGE_HINT)


def _models(gpu: str) -> set[str]:
    """Model names in a GPU's name: "NVIDIA A100-SXM4-40GB" -> {"A100"} (not the memory size, which
    an H100 and an A100 can share)."""
    return {w for w in re.split(r"[\s\-_]+", gpu.upper()) if re.fullmatch(r"[A-Z]{1,2}\d{1,4}", w)}


def pricing_from_options(table: Path | str | None, usd_per_hour: float | None, instance: str | None) -> Pricing | None:
    """The CLI's three options as one Pricing; None when none was given."""
    if table is None and usd_per_hour is None and instance is None:
        return None
    return Pricing(str(table) if table is not None else None, usd_per_hour, instance)
