"""Pair counted op calls with profiled op times: the k-th aten::addmm the counter saw is the
k-th aten::addmm event of each profiled iteration.

Both sides run the same forward on the same inputs, so the sequences agree unless the model
branches on data or timing. When they do not, calls without an event keep time 0 and events
without a call are dropped; the counts go into the profile's notes instead of failing it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict

from hone.profiler.count import OpCall, call_indices
from hone.profiler.timing import OpEvent


@dataclasses.dataclass(frozen=True)
class TimedCall:
    call: OpCall
    time_s: float  # mean over the profiled iterations that had this call; 0 when none had it
    matched: bool
    kernels: tuple[str, ...] = ()  # CUDA kernels of this call (first profiled iteration)


@dataclasses.dataclass(frozen=True)
class JoinResult:
    calls: list[TimedCall]  # in execution order
    unmatched_calls: int  # counted calls that no iteration's events paired with
    unmatched_events: int  # per-iteration events (averaged, rounded) with no counted call

    def notes(self) -> list[str]:
        notes = []
        if self.unmatched_calls:
            # Named, because the usual cause is harmless: observing the forward adds calls eager
            # skips (Python scalars become aten::scalar_tensor calls under a dispatch mode).
            names = Counter(t.call.name for t in self.calls if not t.matched)
            which = ", ".join(f"{name} x{n}" for name, n in names.most_common(3))
            more = ", ..." if len(names) > 3 else ""
            notes.append(f"{self.unmatched_calls} counted op calls had no profiler event ({which}{more}): their time is 0")
        if self.unmatched_events:
            notes.append(f"{self.unmatched_events} profiled op calls per iteration had no counted call: left out")
        return notes


def join(calls: list[OpCall], iterations: list[list[OpEvent]]) -> JoinResult:
    # name -> that op's event times in order, one list per iteration
    per_iteration: list[dict[str, list[float]]] = []
    kernels_of: dict[str, list[tuple[str, ...]]] = defaultdict(list)  # from the first iteration
    for i, events in enumerate(iterations):
        by_name: dict[str, list[float]] = defaultdict(list)
        for event in events:
            by_name[event.name].append(event.time_s)
            if i == 0:
                kernels_of[event.name].append(event.kernels)
        per_iteration.append(by_name)

    timed: list[TimedCall] = []
    unmatched_calls = 0
    for call, k in zip(calls, call_indices(calls)):
        times = [it[call.name][k] for it in per_iteration if k < len(it[call.name])]
        if times:
            kernels = kernels_of[call.name][k] if k < len(kernels_of[call.name]) else ()
            timed.append(TimedCall(call, sum(times) / len(times), True, kernels))
        else:
            timed.append(TimedCall(call, 0.0, False))
            unmatched_calls += 1

    counted: dict[str, int] = defaultdict(int)
    for call in calls:
        counted[call.name] += 1
    extra = [
        sum(max(len(times) - counted[name], 0) for name, times in it.items()) for it in per_iteration
    ]
    unmatched_events = round(sum(extra) / len(extra)) if extra else 0
    return JoinResult(timed, unmatched_calls, unmatched_events)
