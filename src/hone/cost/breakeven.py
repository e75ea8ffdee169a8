"""Cloud against edge: when a device you buy has paid for itself against renting.

An owned device costs nothing per hour; it costs its purchase price once and, optionally, its
electricity while it runs (watts x $/kWh). Against a cloud instance's $ per 1M inferences:

    energy $/1M  = watts / throughput / 3.6e6 J per kWh x $/kWh x 1e6
    saved per inference = (cloud $/1M - energy $/1M) / 1e6
    break-even volume   = purchase $ / saved per inference          (never when nothing is saved)
    break-even time     = volume / throughput, in days of continuous use at the measured rate

With a lifetime, the device breaks even only if that time fits in it; the report also gives the
device's own $ / 1M over its lifetime at continuous use (purchase spread over every inference it
can run, plus energy).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from hone.cost.arithmetic import MILLION, fmt_usd
from hone.errors import InputError

JOULES_PER_KWH = 3.6e6
SECONDS_PER_DAY = 86400.0
DAYS_PER_YEAR = 365.25


@dataclasses.dataclass(frozen=True)
class OwnedDevice:
    purchase_usd: float
    power_watts: float | None = None
    kwh_usd: float | None = None
    lifetime_years: float | None = None

    def __post_init__(self) -> None:
        for name in ("purchase_usd", "power_watts", "kwh_usd"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not math.isfinite(value) or value < 0):
                raise InputError(f"{_flag(name)} must be a finite number >= 0, not {value!r}")
        if self.lifetime_years is not None and not (math.isfinite(self.lifetime_years) and self.lifetime_years > 0):
            raise InputError(f"--lifetime-years must be a positive number, not {self.lifetime_years!r}")
        if (self.power_watts is None) != (self.kwh_usd is None):
            raise InputError("--power-watts and --kwh-price go together: electricity costs watts x $/kWh")

    def energy_usd_per_million(self, throughput_per_s: float) -> float:
        if not self.power_watts or not self.kwh_usd:
            return 0.0
        joules_each = self.power_watts / throughput_per_s
        return joules_each / JOULES_PER_KWH * self.kwh_usd * MILLION


def _flag(name: str) -> str:
    return {"purchase_usd": "--device-price", "power_watts": "--power-watts", "kwh_usd": "--kwh-price"}[name]


@dataclasses.dataclass(frozen=True)
class BreakEven:
    device: OwnedDevice
    throughput_per_s: float  # the device's (measured here)
    cloud_usd_per_million: float
    energy_usd_per_million: float
    inferences: float | None  # None: never
    days: float | None  # of continuous use at throughput_per_s; None: never
    within_lifetime: bool | None  # None: no lifetime given (or never)
    lifetime_usd_per_million: float | None  # the device's own $/1M over its lifetime, busy all the time
    text: str

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}


def break_even(device: OwnedDevice, throughput_per_s: float, cloud_usd_per_million: float) -> BreakEven:
    """Where buying `device` (running at `throughput_per_s`) beats paying `cloud_usd_per_million`."""
    if not (throughput_per_s > 0 and math.isfinite(throughput_per_s)):
        return BreakEven(device, throughput_per_s, cloud_usd_per_million, math.nan, None, None, None, None,
                         "no throughput was measured, so there is no break-even to compute")
    energy = device.energy_usd_per_million(throughput_per_s)
    lifetime = _lifetime_cost(device, throughput_per_s, energy)
    saved_each = (cloud_usd_per_million - energy) / MILLION
    rate = f"{throughput_per_s:.4g}/s"
    if not math.isfinite(cloud_usd_per_million) or saved_each <= 0:
        why = (f"the device's electricity alone costs {fmt_usd(energy)} / 1M at {rate}, not less than the cloud's "
               f"{fmt_usd(cloud_usd_per_million)} / 1M" if math.isfinite(cloud_usd_per_million)
               else "the cloud figure is unknown")
        return BreakEven(device, throughput_per_s, cloud_usd_per_million, energy, None, None, None, lifetime,
                         f"never breaks even: {why}")
    inferences = device.purchase_usd / saved_each
    days = inferences / throughput_per_s / SECONDS_PER_DAY
    within = None
    text = (f"breaks even after {_count(inferences)} inferences: {_days(days)} of continuous use at {rate} "
            f"(device {fmt_usd(device.purchase_usd)}"
            + (f" + electricity {fmt_usd(energy)} / 1M" if energy else ", electricity not counted")
            + f", against the cloud's {fmt_usd(cloud_usd_per_million)} / 1M)")
    if device.lifetime_years is not None:
        span = device.lifetime_years * DAYS_PER_YEAR
        within = days <= span
        if within:
            per_day = inferences / span
            text += (f"; within its {device.lifetime_years:g}-year lifetime at {_count(per_day)} inferences a day "
                     f"or more")
        else:
            text = (f"does not break even within its {device.lifetime_years:g}-year lifetime even in continuous use: "
                    f"it needs {_count(inferences)} inferences, {_days(days)} at {rate}")
    return BreakEven(device, throughput_per_s, cloud_usd_per_million, energy, inferences, days, within, lifetime, text)


def _lifetime_cost(device: OwnedDevice, throughput_per_s: float, energy: float) -> float | None:
    if device.lifetime_years is None:
        return None
    runs = throughput_per_s * device.lifetime_years * DAYS_PER_YEAR * SECONDS_PER_DAY
    return device.purchase_usd / runs * MILLION + energy


def _count(n: float) -> str:
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def _days(days: float) -> str:
    if days < 1:
        return f"{days * 24:.3g} hours"
    if days >= 2 * DAYS_PER_YEAR:
        return f"{days:,.0f} days ({days / DAYS_PER_YEAR:.3g} years)"
    return f"{days:,.3g} days" if days < 1000 else f"{days:,.0f} days"
