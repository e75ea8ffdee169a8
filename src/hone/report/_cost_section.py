"""The cost bits of the run reports, hooked into console, HTML and JSON with a line or two each:
a `$ / 1M` column (only when the run has a price), the line saying what the machine is priced
as (and that the closest match is an assumption), and the JSON's "cost" block."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hone.cost.arithmetic import fmt_usd, usd_per_million
from hone.cost.run_cost import candidate_costs, run_price

if TYPE_CHECKING:
    from rich.text import Text

    from hone.bench.measurement import Measurement
    from hone.cost.pricing import Price
    from hone.search.result import CandidateResult
    from hone.search.run import OptimizeResult

COLUMN = "$ / 1M"
ASSUMES = "$ / 1M: the instance busy all the time at the measured throughput (one inference = one sample)"


def price_of(result: "OptimizeResult") -> "Price | None":
    return run_price(result.run)


def cost_of(m: "Measurement | None", price: "Price | None") -> float | None:
    if m is None or price is None or not m.n:
        return None
    return usd_per_million(m.throughput, price.usd_per_hour)


def cell(r: "CandidateResult", price: "Price | None") -> "Text":
    from rich.text import Text

    return Text(fmt_usd(cost_of(r.measurement if r.ok else None, price)))


def lines(result: "OptimizeResult") -> list["Text"]:
    """The console footer's cost line, when the run has a price."""
    from rich.text import Text

    price = price_of(result)
    return [Text(f"cost: {price.describe()}. {ASSUMES}", "dim")] if price is not None else []


def html_columns(columns: tuple, result: "OptimizeResult") -> tuple:
    """The candidate table's columns with `$ / 1M` after throughput when the run has a price."""
    if price_of(result) is None:
        return columns
    at = [name for name, _ in columns].index("throughput") + 1
    return (*columns[:at], (COLUMN, "number"), *columns[at:])


def html_machine_rows(result: "OptimizeResult") -> list[tuple[str, str]]:
    price = price_of(result)
    return [("price", f"{price.describe()}. {ASSUMES}")] if price is not None else []


def json_block(result: "OptimizeResult") -> dict[str, Any]:
    """{"cost": {...}} for the JSON report when the run has a price, else {}."""
    price = price_of(result)
    if price is None:
        return {}
    return {"cost": {"price": price.to_dict(), "priced_as": price.describe(), "assumes": ASSUMES,
                     "candidates": [c.to_dict() for c in candidate_costs(result, price)]}}
