"""Guarantee: runs in several processes write one store at once without "database is locked"
and without duplicate rows ((run, recipe, input set) is unique): writes are short IMMEDIATE
transactions that queue behind SQLite's busy timeout."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hone.store import Store

TESTS = Path(__file__).resolve().parents[1]
WRITES = 300


def _spawn(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])})


def _finish(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-3000:]


def _duplicates(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT run_id, recipe_key, input_set, COUNT(*) FROM candidates "
                            "GROUP BY run_id, recipe_key, input_set HAVING COUNT(*) > 1").fetchall()


def _integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def test_writers_in_three_processes_at_once(tmp_path):
    """Each process starts its own run and records WRITES results as fast as it can, each
    result twice (the second an update); a fourth lists the runs throughout."""
    writer = """
        import sys
        from hone.store import Store
        from results_factory import make_info, make_results
        with Store(sys.argv[1]) as db:
            run = db.start_run(make_info(), "concurrent")
            results = make_results()
            for i in range(int(sys.argv[2])):
                result = results[i % len(results)]
                result.input_set = f"set{i}"
                db.record(run, result)
                db.record(run, result)  # the same key again: an update, never a second row
            db.finish_run(run)
    """
    reader = """
        import sys, time
        from hone.store import Store
        deadline = time.monotonic() + 20
        with Store(sys.argv[1]) as db:
            while time.monotonic() < deadline and sum(r["status"] == "finished" for r in db.list_runs()) < 3:
                db.list_runs()
    """
    db = tmp_path / "runs.db"
    Store(db).close()  # created (and migrated) once, so the writers race on writes, not on creation
    _finish([*(_spawn(writer, str(db), str(WRITES)) for _ in range(3)), _spawn(reader, str(db))])
    with Store(db) as store:
        runs = store.list_runs()
        assert [r["status"] for r in runs] == ["finished"] * 3 and [r["candidates"] for r in runs] == [WRITES] * 3
    assert _duplicates(db) == [] and _integrity(db) == "ok"


@pytest.mark.slow
def test_two_sweeps_into_one_store_at_once(tmp_path):
    sweep = """
        import sys
        import hone
        from in_process_executor import InProcessExecutor
        from plugins_for_tests import DelayRuntime
        from tiny_models import tiny_mlp
        model, x = tiny_mlp()
        recipes = [DelayRuntime.recipe_with(f"{sys.argv[2]}-{i}", 0.0002 * i) for i in range(10)]
        hone.optimize(model, x, recipes=recipes, store=sys.argv[1], executor=InProcessExecutor(), progress=False,
                      measure_time_s=0.1, profile_first=False, time_budget_s=None)
    """
    db = tmp_path / "runs.db"
    _finish([_spawn(sweep, str(db), "a"), _spawn(sweep, str(db), "b")])
    with Store(db) as store:
        runs = store.list_runs()
        assert sorted(r["status"] for r in runs) == ["finished", "finished"]
        for run in runs:
            labels = [r.recipe.label for r in store.results(run["id"])]
            assert len(labels) == len(set(labels)) == 11  # eager and its ten, each once
    assert _duplicates(db) == [] and _integrity(db) == "ok"
