"""Time each aten op call (torch.profiler) and the whole forward (hone.bench.measure).

Per-op times come from a few profiled iterations, each wrapped in a record_function marker so
events can be told apart by iteration. The whole-forward latency is measured separately,
without the profiler, because the profiler's own bookkeeping (a few µs per event) would
inflate it: a profile of a decode step with hundreds of tiny ops would blame the profiler.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch

from hone.bench.measure import MeasureSettings, measure
from hone.bench.measurement import Measurement
from hone.bench.timers import timer_for

PROFILED_ITERATIONS = 3  # averaged per call; few, because profiling a big forward is slow
PROFILE_WARMUP_CALLS = 2  # oneDNN primitive creation and allocator growth happen on early calls
ITERATION_MARKER = "hone::iteration"
# Short settings: a profile wants where the time goes, not a benchmark-grade latency.
WALL_SETTINGS = MeasureSettings(max_time_s=2.0, warmup_max_s=1.0, min_time_s=0.5, min_samples=5)
US = 1e-6  # profiler times are in microseconds
# Profiler name -> the name the counter records for the same call. Eager's reshape takes a
# shortcut (aten::_reshape_alias) that it skips for tensors under a Python dispatch mode, so
# the counter sees aten::view where the unobserved forward ran aten::_reshape_alias.
EVENT_ALIASES = {"aten::_reshape_alias": "aten::view"}


@dataclasses.dataclass(frozen=True)
class OpEvent:
    """One profiled aten op call: its name and time (seconds) in one iteration."""

    name: str
    time_s: float
    kernels: tuple[str, ...] = ()  # CUDA kernels it launched, its children's included


@contextlib.contextmanager
def threads_set(threads: int) -> Iterator[None]:
    """torch.set_num_threads for the duration, restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _event_time_s(event: Any, device: str) -> float:
    """Time of the op including what it runs inside itself (an aten::_to_copy's aten::copy_):
    the counter attributes that work to the op, so its time must be attributed there too."""
    if device.startswith("cuda"):
        total = getattr(event, "device_time_total", None)
        if total is None:  # older torch
            total = getattr(event, "cuda_time_total", 0.0)
        return float(total) * US
    return float(event.cpu_time_total) * US


def _kernel_names(event: Any) -> tuple[str, ...]:
    """The CUDA kernels an op launched, nested calls included (aten::addmm's own GEMM, the
    copy kernel under aten::_to_copy). Empty on CPU."""
    names = [k.name for k in getattr(event, "kernels", ()) or ()]
    for child in getattr(event, "cpu_children", ()) or ():
        names.extend(_kernel_names(child))
    return tuple(names)


def _iteration_of(event: Any) -> Any | None:
    """The iteration marker this event runs under, or None."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == ITERATION_MARKER:
            return parent
        parent = parent.cpu_parent
    return None


def dispatch_level_events(events: Any, names: set[str], device: str) -> list[list[OpEvent]]:
    """Per iteration, the events the counter also sees, in start order.

    An event counts when its name is one the counter recorded and no ancestor (below the
    iteration marker) has such a name either: a kernel's internal calls (aten::empty inside
    aten::addmm) are nested under a counted op and belong to it. Composite parents the counter
    decomposed (aten::linear, aten::layer_norm) carry names the counter never saw.
    """
    iterations: dict[int, list[tuple[float, OpEvent]]] = {}
    for event in events:
        name = EVENT_ALIASES.get(event.name, event.name)
        if name not in names:
            continue
        marker = _iteration_of(event)
        if marker is None:
            continue
        parent, nested = event.cpu_parent, False
        while parent is not None and parent is not marker:
            if EVENT_ALIASES.get(parent.name, parent.name) in names:
                nested = True
                break
            parent = parent.cpu_parent
        if not nested:
            start = event.time_range.start
            kernels = _kernel_names(event) if device.startswith("cuda") else ()
            iterations.setdefault(id(marker), []).append((start, OpEvent(name, _event_time_s(event, device), kernels)))
    return [[e for _, e in sorted(evts, key=lambda p: p[0])] for evts in iterations.values()]


def profile_ops(
    fn: Callable[..., Any], args: tuple[torch.Tensor, ...], names: set[str], device: str = "cpu",
    iterations: int = PROFILED_ITERATIONS,
) -> list[list[OpEvent]]:
    """Run fn(*args) under torch.profiler; per iteration, the dispatch-level op events."""
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU]
    if device.startswith("cuda"):
        activities.append(ProfilerActivity.CUDA)
    with torch.inference_mode():
        for _ in range(PROFILE_WARMUP_CALLS):
            fn(*args)
        _sync(device)
        with profile(activities=activities, record_shapes=True) as prof:
            for _ in range(iterations):
                with record_function(ITERATION_MARKER):
                    fn(*args)
                    _sync(device)
    return dispatch_level_events(prof.events(), names, device)


def measure_wall(
    fn: Callable[..., Any], args: tuple[torch.Tensor, ...], *, threads: int, device: str = "cpu",
    settings: MeasureSettings = WALL_SETTINGS,
) -> Measurement:
    """Median-ready latency samples of the whole forward, without the profiler."""
    with torch.inference_mode():
        return measure(
            lambda: fn(*args), timer_for(device), batch_size=int(args[0].shape[0]) if args else 1,
            threads=threads, settings=settings,
        )
