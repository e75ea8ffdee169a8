"""`hone cost [RUN_ID]`: what a stored run's candidates cost per 1M inferences here, when a
device you own breaks even against the cloud, and a projection of the model onto other hardware
(a lower bound from published peaks, labelled as one), checked against this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from hone.cli.app import app

PRECISIONS = {"as-profiled": None, "bf16": "bfloat16", "fp16": "float16"}


@app.command()
def cost(
    run_id: Optional[int] = typer.Argument(None, metavar="RUN_ID", help="Run to price (default: the latest)."),
    db: Optional[Path] = typer.Option(
        None, "--db", envvar="HONE_DB", help="Run store (default ./hone-runs/hone.db).", show_default=False
    ),
    price_table: Optional[Path] = typer.Option(
        None, "--price-table", help="a price table of your own (the schema of hone/cost/prices.json)", dir_okay=False
    ),
    price_per_hour: Optional[float] = typer.Option(None, "--price-per-hour", help="this machine's price, $ per hour"),
    instance: Optional[str] = typer.Option(None, "--instance", help="price this machine as this price-table row, e.g. c7i.large"),
    device_price: Optional[float] = typer.Option(
        None, "--device-price", help="break-even: the purchase price ($) of a device you own that runs as fast as this machine"
    ),
    power_watts: Optional[float] = typer.Option(None, "--power-watts", help="break-even: the device's power draw while busy"),
    kwh_price: Optional[float] = typer.Option(None, "--kwh-price", help="break-even: electricity, $ per kWh"),
    lifetime_years: Optional[float] = typer.Option(None, "--lifetime-years", help="break-even: the device's useful life"),
    against: Optional[str] = typer.Option(
        None, "--against", help="break-even against a projected target (h100, a100, l4, t4, xeon-amx, graviton3) "
        "instead of a cloud machine like this one"
    ),
    precision: str = typer.Option(
        "as-profiled", "--precision", help="project the float32 ops as profiled, or as if run in bf16 or fp16"
    ),
    targets: Optional[Path] = typer.Option(
        None, "--targets", help="a targets table of your own (the schema of hone/cost/targets.json)", dir_okay=False
    ),
    as_json: bool = typer.Option(False, "--json", help="print the cost report as JSON"),
) -> None:
    """$ / 1M inferences per candidate, the break-even of an owned device, and which hardware (projected)."""
    from hone.cli.report import _open_store
    from hone.cost.breakeven import OwnedDevice
    from hone.cost.pricing import pricing_from_options
    from hone.cost.run_cost import cost_report
    from hone.errors import InputError

    if precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    pricing = pricing_from_options(price_table, price_per_hour, instance)  # a bad table fails here
    owned = None
    if device_price is not None:
        owned = OwnedDevice(device_price, power_watts, kwh_price, lifetime_years)
    elif any(x is not None for x in (power_watts, kwh_price, lifetime_years, against)):
        raise InputError("--power-watts, --kwh-price, --lifetime-years and --against describe a break-even",
                         hint="give the device's purchase price with --device-price")
    with _open_store(db) as store:
        result = store.load_run(run_id, resolve=False)  # pricing needs no plugin
    report = cost_report(result, pricing=pricing, device=owned, against=against, precision=PRECISIONS[precision],
                         targets=str(targets) if targets is not None else None)
    if as_json:
        from hone.report.json import _json_safe

        typer.echo(json.dumps(_json_safe(report.to_dict()), indent=2, allow_nan=False, default=str))
        return
    from hone.report.cost import render_cost

    render_cost(report)
