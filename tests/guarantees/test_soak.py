"""Guarantee: a long sweep leaks nothing. 100 candidates through the sweep machinery (in this
process, so every byte the parent keeps shows in its own memory), then a sweep whose candidates
each run in a worker process: afterwards no more open files, temporary folders, shared-memory
segments or child processes than before, and the parent's memory within SOAK_RSS_BOUND.
(benchmarks/soak.py runs 100 worker candidates and records the figures in docs/GUARANTEES.md.)"""

from __future__ import annotations

import gc
import os
import tempfile
from pathlib import Path

import psutil
import pytest

import hone
from in_process_executor import InProcessExecutor
from plugins_for_tests import DelayRuntime
from tiny_models import tiny_mlp

pytestmark = pytest.mark.slow
SOAK_CANDIDATES = 100
WORKER_CANDIDATES = 6
SOAK_RSS_BOUND = 64 * 2**20  # the parent's growth over SOAK_CANDIDATES candidates (allocator slack, caches)


def _recipes(prefix: str, count: int):
    # Distinct delays: distinct recipe keys, so nothing is deduplicated.
    return [DelayRuntime.recipe_with(f"{prefix}-{i}", 1e-6 * (i + 1)) for i in range(count)]


def resources(private_tmp: Path) -> dict[str, int]:
    gc.collect()
    me = psutil.Process()
    return {
        "open_files": len(os.listdir("/proc/self/fd")),
        # torch's compile cache (torchinductor_<user>) is meant to outlive a run; nothing else is
        "temporary_entries": len([n for n in os.listdir(private_tmp) if not n.startswith("torchinductor_")]),
        "shared_memory": len(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else 0,
        "children": len(me.children(recursive=True)),
        "rss": me.memory_info().rss,
    }


def _sweep(tmp_path: Path, recipes, **kw):
    model, x = tiny_mlp()
    return hone.optimize(model, x, recipes=recipes, store=tmp_path / "runs.db", progress=False, measure_time_s=0.05,
                         profile_first=False, fallback_attempts=0, time_budget_s=None, **kw)


def _assert_no_growth(before: dict[str, int], after: dict[str, int], rss_bound: int) -> None:
    for what in ("open_files", "temporary_entries", "shared_memory", "children"):
        assert after[what] <= before[what], (what, before, after)
    assert after["rss"] - before["rss"] < rss_bound, (before, after)


def test_a_hundred_candidates_leave_nothing_behind(tmp_path, monkeypatch):
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setenv("TMPDIR", str(private))
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    _sweep(tmp_path, _recipes("warm", 5), executor=InProcessExecutor())  # imports, caches, the store's first use
    before = resources(private)
    result = _sweep(tmp_path, _recipes("soak", SOAK_CANDIDATES), executor=InProcessExecutor())
    assert sum(r.ok for r in result.results) == SOAK_CANDIDATES + 1
    del result
    _assert_no_growth(before, resources(private), SOAK_RSS_BOUND)


def test_candidates_in_worker_processes_leave_nothing_behind(tmp_path, monkeypatch):
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setenv("TMPDIR", str(private))
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    _sweep(tmp_path, _recipes("warm", 1))
    before = resources(private)
    result = _sweep(tmp_path, _recipes("workers", WORKER_CANDIDATES))
    assert sum(r.ok for r in result.results) == WORKER_CANDIDATES + 1
    del result
    _assert_no_growth(before, resources(private), SOAK_RSS_BOUND)
