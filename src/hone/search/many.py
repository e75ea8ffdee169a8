"""Several models in one command (`hone optimize a b c`): each model's own `hone.optimize` run,
its own store run, report and winner.

Under the local executor they run one after another (each one's candidates already take this
machine's cores in turn). Under Ray they run side by side: one driver thread per model, all
sharing one RayExecutor (one cluster connection), each with its own store connection (the store
is WAL with a busy timeout: concurrent writers wait, never fail). On a cluster of several nodes
their candidates run at the same time on different nodes; on one node they take that node's
timing slot in turn (search.exclusive), so side by side there only overlaps what is not timed.

A model that fails (bad input, a harness error, a bug) is reported with its error; the others
go on.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from hone.search.executor import executor_for


@dataclasses.dataclass
class ModelRun:
    """One model's outcome: its OptimizeResult, or the error that stopped it."""

    model: str
    result: Any = None  # OptimizeResult
    error: Exception | None = None
    wall_s: float = 0.0


def optimize_many(
    models: Iterable[str],
    *,
    executor: str | None = None,
    ray_address: str | None = None,
    around: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    on_start: Callable[[str], None] = lambda model: None,
    on_done: Callable[[ModelRun], None] = lambda run: None,
    **options: Any,
) -> list[ModelRun]:
    """Run `hone.optimize(model, **options)` for each model; one ModelRun each, in the given
    order. `around()`: a context entered around the work (the CLI's output redirection): per
    model one after another, once around all side by side. `on_start(model)` / `on_done(run)`:
    called as each model starts and ends (from its thread under Ray; never two at once)."""
    models = list(models)
    runs_on = executor_for(executor, ray_address)  # an unknown executor or a missing ray fails first
    report = _Reporter(on_start, on_done)
    with runs_on as shared:
        if shared is None:
            return [_one_after_another(model, around, report, options) for model in models]
        return _side_by_side(models, shared, around, report, options)


def _one_after_another(model: str, around, report: "_Reporter", options: dict[str, Any]) -> ModelRun:
    with around():
        return _run(model, None, report, options)


def _side_by_side(models: list[str], shared: Any, around, report: "_Reporter", options: dict[str, Any]) -> list[ModelRun]:
    import os

    from hone.registry import PASSES, RUNTIMES

    # Several progress bars redrawn at once would garble the terminal: on_start/on_done say it.
    options = {**options, "progress": False}
    with around():
        # In this (the main) thread: Ray installs signal handlers when it starts (and its daemons
        # inherit the redirected output), and the plugin registries are filled once, not by
        # several threads at the same time.
        if hasattr(shared, "start"):
            shared.start(options.get("threads") or os.cpu_count() or 1)
        RUNTIMES.names(), PASSES.names()
        return _in_threads(models, shared, report, options)


def _in_threads(models: list[str], shared: Any, report: "_Reporter", options: dict[str, Any]) -> list[ModelRun]:
    with concurrent.futures.ThreadPoolExecutor(len(models), thread_name_prefix="hone-model") as pool:
        futures = [pool.submit(_run, model, shared, report, options) for model in models]
        try:
            concurrent.futures.wait(futures)
        except BaseException:
            # Ctrl-C reaches this thread only: stop the tasks in flight, so every model's run
            # ends `interrupted` (resumable), then leave.
            if hasattr(shared, "interrupt"):
                shared.interrupt()
            concurrent.futures.wait(futures)
            raise
    return [f.result() for f in futures]


def _run(model: str, shared: Any, report: "_Reporter", options: dict[str, Any]) -> ModelRun:
    import hone

    report.start(model)
    started = time.perf_counter()
    run = ModelRun(model)
    try:
        run.result = hone.optimize(model, executor=shared, **options)
    except Exception as exc:  # noqa: BLE001 - one model's failure is reported; the others go on
        run.error = exc
    run.wall_s = time.perf_counter() - started
    report.done(run)
    return run


class _Reporter:
    """The callbacks, one at a time whichever thread calls them."""

    def __init__(self, on_start: Callable[[str], None], on_done: Callable[[ModelRun], None]):
        self._lock = threading.Lock()
        self._on_start, self._on_done = on_start, on_done

    def start(self, model: str) -> None:
        with self._lock:
            self._on_start(model)

    def done(self, run: ModelRun) -> None:
        with self._lock:
            self._on_done(run)
