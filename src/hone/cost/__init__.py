"""What inference costs, and where it would cost less.

    table.py       the price table (prices.json: dated list prices with sources; --price-table)
    pricing.py     Pricing (what the user asked) -> Price (stored with the run)
    arithmetic.py  $ / 1M inferences = $/h / (throughput x 3600) x 1e6
    breakeven.py   an owned device against the cloud: the volume and days to break even
    targets.py     published peaks per target (targets.json) and this machine's measured ones
    projection.py  the roofline projection: a lower bound from peaks, per target, batch 1 and best
    run_cost.py    a stored run's cost report (`hone cost`)

Nothing here imports torch or a backend.
"""

from hone.cost.pricing import Price, Pricing

__all__ = ["Price", "Pricing"]
