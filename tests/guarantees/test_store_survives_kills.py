"""Guarantee: the store survives a kill. kill -9 of the parent mid-sweep (at a chosen moment,
and at random moments while results are being written) leaves a store that passes SQLite's
integrity check, the candidate that was running marked as interrupted, and `--resume` runs
only what is missing. A worker killed mid-candidate is `crashed` and the sweep goes on."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import hone
from hone.search.result import Status
from hone.store import Store
from in_process_executor import InProcessExecutor
from plugins_for_tests import CountingRuntime, DelayRuntime, HangWhileFlagRuntime, RaiseRuntime
from tiny_models import tiny_mlp

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parents[1]
KILL_TRIALS = 3
FAST_CANDIDATES = 12


def _recipes(flag: Path):
    return [CountingRuntime.recipe(), HangWhileFlagRuntime.recipe_with(str(flag)), RaiseRuntime.recipe()]


def _fast_recipes():
    return [DelayRuntime.recipe_with(f"delay-{i}", 0.0005 * i) for i in range(FAST_CANDIDATES)]


OPTIONS = dict(progress=False, measure_time_s=0.1, profile_first=False, fallback_attempts=0, time_budget_s=None)


def _start(tmp_path: Path, recipes_code: str, in_process: bool) -> subprocess.Popen:
    script = tmp_path / "sweep.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from pathlib import Path
        import hone
        from in_process_executor import InProcessExecutor
        from plugins_for_tests import CountingRuntime, DelayRuntime, HangWhileFlagRuntime, RaiseRuntime
        from test_store_survives_kills import OPTIONS, _fast_recipes, _recipes
        from tiny_models import tiny_mlp
        model, x = tiny_mlp()
        hone.optimize(model, x, recipes={recipes_code}, store=sys.argv[1],
                      executor=InProcessExecutor() if {in_process} else None, **OPTIONS)
    """))
    path = os.pathsep.join([str(TESTS), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "runs.db")],
                            env={**os.environ, "PYTHONPATH": path}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def _wait_for(path: Path, parent: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert parent.poll() is None, parent.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def _wait_for_a_result(db: Path, parent: subprocess.Popen, seconds: float = 120) -> None:
    _wait_for(db, parent, seconds)
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(sqlite3.Error), sqlite3.connect(db) as conn:
            if conn.execute("SELECT COUNT(*) FROM candidates").fetchone()[0]:
                return
        assert parent.poll() is None and time.monotonic() < deadline, "the sweep recorded nothing"
        time.sleep(0.02)


def _gone(pid: int, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_kill_9_of_the_parent_marks_the_running_candidate_and_resume_runs_only_what_is_missing(tmp_path):
    flag = tmp_path / "hang"
    flag.touch()
    parent = _start(tmp_path, "_recipes(Path(sys.argv[1]).parent / 'hang')", in_process=False)
    _wait_for(Path(f"{flag}.pid"), parent)
    worker = int(Path(f"{flag}.pid").read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert _gone(worker)  # the worker ends with its parent (die_with_parent), not orphaned

    db = tmp_path / "runs.db"
    assert _integrity(db) == "ok"
    with Store(db) as store:
        killed = store.load_run()
        assert store.run_status(killed.run.run_id) == "running"
    assert {r.recipe.label for r in killed.results} == {"eager", "test_counting"}
    assert any(w.startswith("test_hang_while_flag @ bs4: interrupted") for w in killed.run.warnings), killed.run.warnings

    flag.unlink()  # the candidate can finish now
    model, x = tiny_mlp()
    resumed = hone.optimize(model, x, recipes=_recipes(flag), store=db, resume=True, executor=InProcessExecutor(),
                            **OPTIONS)
    assert resumed.run.run_id == killed.run.run_id
    assert f"interrupted in run {killed.run.run_id}: test_hang_while_flag @ bs4" in " ".join(resumed.run.warnings)
    before = {r.recipe.label: r for r in killed.results}
    after = {r.recipe.label: r for r in resumed.results}
    for label in ("eager", "test_counting"):  # kept, not measured again
        assert after[label].measurement.times_s == before[label].measurement.times_s
    assert after["test_hang_while_flag"].status is Status.OK and after["test_raise"].status is Status.CRASHED
    assert _integrity(db) == "ok"
    with Store(db) as store:
        assert store.in_flight(resumed.run.run_id) == [] and store.run_status(resumed.run.run_id) == "finished"


def test_a_worker_killed_mid_candidate_is_crashed_and_the_sweep_finishes(tmp_path):
    flag = tmp_path / "hang"
    flag.touch()
    parent = _start(tmp_path, "_recipes(Path(sys.argv[1]).parent / 'hang')", in_process=False)
    _wait_for(Path(f"{flag}.pid"), parent)
    os.kill(int(Path(f"{flag}.pid").read_text()), signal.SIGKILL)
    assert parent.wait(timeout=300) == 0, parent.stderr.read().decode()[-2000:]
    assert _integrity(tmp_path / "runs.db") == "ok"
    with Store(tmp_path / "runs.db") as store:
        run = store.load_run()
        assert store.in_flight(run.run.run_id) == []
    statuses = {r.recipe.label: (r.status, r.reason) for r in run.results}
    assert statuses["test_hang_while_flag"] == (Status.CRASHED, "worker killed by SIGKILL (the kernel's out-of-memory killer sends this)")
    assert statuses["test_raise"][0] is Status.CRASHED and statuses["test_counting"][0] is Status.OK


def test_kill_9_at_random_moments_while_results_are_written(tmp_path):
    """Candidates in the parent's own process record a result every few tens of milliseconds:
    a kill at a random moment lands inside or between transactions."""
    rng = random.Random(16)
    model, x = tiny_mlp()
    cut_short = 0
    for trial in range(KILL_TRIALS):
        here = tmp_path / f"trial-{trial}"
        here.mkdir()
        parent = _start(here, "_fast_recipes()", in_process=True)
        db = here / "runs.db"
        _wait_for_a_result(db, parent)  # the sweep is under way: results land every few tenths of a second
        time.sleep(rng.uniform(0.0, 2.5))
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _integrity(db) == "ok", f"trial {trial}"
        with Store(db) as store:
            stored = {r.recipe.label: r.measurement.times_s for r in store.load_run().results if r.measurement}
        cut_short += 0 < len(stored) < FAST_CANDIDATES + 1
        resumed = hone.optimize(model, x, recipes=_fast_recipes(), store=db, resume=True, executor=InProcessExecutor(),
                                **OPTIONS)
        assert {r.recipe.label for r in resumed.results} == {"eager", *(f"delay-{i}" for i in range(FAST_CANDIDATES))}
        for r in resumed.results:  # what was stored before the kill is kept as it was
            if r.recipe.label in stored:
                assert r.measurement.times_s == stored[r.recipe.label], (trial, r.recipe.label)
        assert _integrity(db) == "ok"
    assert cut_short, "no kill landed inside a sweep"
