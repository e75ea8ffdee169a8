"""Dollars per million inferences from a throughput and a price per hour.

    $ / 1M = usd_per_hour / (throughput_per_s x 3600) x 1e6

An instance busy all the time at its measured throughput: idle time, load balancers, storage
and traffic are not in it. One inference is one sample (a batch of 8 is 8 inferences).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hone.cost.pricing import Price
    from hone.search.result import CandidateResult

SECONDS_PER_HOUR = 3600.0
MILLION = 1e6


def usd_per_million(throughput_per_s: float, usd_per_hour: float) -> float:
    """$ per 1M inferences at `throughput_per_s` samples a second; inf when nothing runs."""
    if usd_per_hour < 0 or not math.isfinite(usd_per_hour):
        raise ValueError(f"usd_per_hour must be a finite number >= 0, got {usd_per_hour!r}")
    if not throughput_per_s > 0 or not math.isfinite(throughput_per_s):
        return math.inf
    return usd_per_hour / (throughput_per_s * SECONDS_PER_HOUR) * MILLION


def best_rate(per_set: "dict[str, CandidateResult]") -> tuple[str, float]:
    """(input set, samples a second) where a candidate gives the most; ("", 0.0) with no timing."""
    rates = [(r.measurement.throughput, label) for label, r in per_set.items()
             if r.measurement is not None and r.measurement.n and math.isfinite(r.measurement.throughput)]
    if not rates:
        return "", 0.0
    rate, label = max(rates)
    return label, rate


def fmt_usd(usd: float | None) -> str:
    """"$0.423", "$12.3", "$1,234": three significant figures, "-" when there is no figure."""
    if usd is None or not math.isfinite(usd):
        return "-"
    if usd >= 1000:
        return f"${usd:,.0f}"
    if usd >= 1:
        return f"${usd:.3g}" if usd < 100 else f"${usd:.0f}"
    if usd == 0:
        return "$0"
    return f"${usd:.3g}" if usd >= 0.001 else f"${usd:.2e}"


def cost_note(per_set: "dict[str, CandidateResult]", price: "Price | None") -> str:
    """"$0.423 / 1M at bs8 priced as c7a.large": a candidate's cost at its best input set."""
    label, rate = best_rate(per_set)
    if price is None:
        return f"no price known, ranked by throughput ({rate:.4g} samples/s at {label or 'no set'}), the same order"
    where = f"priced as {price.instance}" if price.instance else f"at ${price.usd_per_hour:.4g}/h"
    return f"{fmt_usd(usd_per_million(rate, price.usd_per_hour))} / 1M at {label} {where}"
