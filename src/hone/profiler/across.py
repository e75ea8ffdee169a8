"""Where the time goes over a whole workload: the shares of its smallest and largest input sets.

hone's speedup is a geometric mean over the workload's input sets, so each set's time counts
equally: at batch 1 a small model's forward is mostly fixed per-call cost (a runtime without
per-op dispatch wins), at batch 64 it is arithmetic (lower precision wins). The plan follows the
mean of the two profiles' shares; the table of ops stays the largest set's, where the
arithmetic is.
"""

from __future__ import annotations

import dataclasses

from hone.profiler.records import Profile


def across_sets(largest: Profile, others: list[Profile]) -> Profile:
    """`largest` with its shares and verdict replaced by the mean over it and `others`, and a
    note giving each set's shares."""
    profiles = [largest, *others]
    if len(profiles) == 1:
        return largest
    bounds = sorted({k for p in profiles for k in p.shares})
    mean = {k: sum(p.shares.get(k, 0.0) for p in profiles) / len(profiles) for k in bounds}
    verdict = max(mean, key=lambda k: mean[k]) if largest.verdict else ""
    per_set = "; ".join(
        f"{p.input_set}: " + ", ".join(f"{k} {p.shares.get(k, 0.0):.0%}" for k in bounds) for p in profiles
    )
    note = f"shares are the mean over input sets ({per_set}): a speedup is a geometric mean over the sets"
    return dataclasses.replace(
        largest, shares=mean, verdict=verdict, input_set=", ".join(p.input_set for p in profiles),
        notes=[*largest.notes, note],
    )
