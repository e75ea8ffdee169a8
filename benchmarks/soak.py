"""Soak: one sweep of many candidates, each in its own worker process, and what the parent holds
before and after (open files, temporary folders, shared-memory segments, child processes, its
resident memory). The figures go in docs/GUARANTEES.md.

    python benchmarks/soak.py [--candidates N] [--kill-trials N]

--kill-trials N: also kill -9 N sweeps at random moments (tests/guarantees kill 3) and count
the stores that pass SQLite's integrity check and resume to a complete run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "guarantees")]

import hone  # noqa: E402
from plugins_for_tests import DelayRuntime  # noqa: E402
from test_soak import resources  # noqa: E402
from test_store_survives_kills import _wait_for_a_result as _wait  # noqa: E402
from tiny_models import tiny_mlp  # noqa: E402

OPTIONS = dict(progress=False, measure_time_s=0.05, profile_first=False, fallback_attempts=0, time_budget_s=None)


def recipes(prefix: str, count: int):
    return [DelayRuntime.recipe_with(f"{prefix}-{i}", 1e-6 * (i + 1)) for i in range(count)]


def soak(candidates: int, where: Path) -> None:
    private = where / "tmp"
    private.mkdir()
    os.environ["TMPDIR"] = str(private)
    tempfile.tempdir = str(private)
    model, x = tiny_mlp()
    hone.optimize(model, x, recipes=recipes("warm", 1), store=where / "runs.db", **OPTIONS)
    before = resources(private)
    started = time.perf_counter()
    result = hone.optimize(model, x, recipes=recipes("soak", candidates), store=where / "runs.db", **OPTIONS)
    wall = time.perf_counter() - started
    ok = sum(r.ok for r in result.results)
    del result
    after = resources(private)
    print(f"soak: {candidates} candidates in worker processes, {ok} ok, {wall:.0f} s")
    print("| | before | after |\n|---|---:|---:|")
    for what in ("open_files", "temporary_entries", "shared_memory", "children"):
        print(f"| {what.replace('_', ' ')} | {before[what]} | {after[what]} |")
    print(f"| parent RSS (MiB) | {before['rss'] / 2**20:.0f} | {after['rss'] / 2**20:.0f} |")


SWEEP = """
import sys
import hone
from in_process_executor import InProcessExecutor
from plugins_for_tests import DelayRuntime
from tiny_models import tiny_mlp
model, x = tiny_mlp()
hone.optimize(model, x, recipes=[DelayRuntime.recipe_with(f"d-{i}", 5e-4 * i) for i in range(12)], store=sys.argv[1],
              executor=InProcessExecutor(), progress=False, measure_time_s=0.1, profile_first=False,
              fallback_attempts=0, time_budget_s=None)
"""


def _wait_for_a_result(db: Path) -> None:
    class _Running:  # the test helper polls a Popen; here the sweep is assumed alive
        def poll(self):
            return None

    _wait(db, _Running())


def kill_trials(trials: int, where: Path) -> None:
    rng = random.Random(16)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    survived = mid_sweep = 0
    for trial in range(trials):
        db = where / f"kill-{trial}.db"
        proc = subprocess.Popen([sys.executable, "-c", SWEEP, str(db)], env=env, stderr=subprocess.DEVNULL)
        _wait_for_a_result(db)
        time.sleep(rng.uniform(0.0, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with sqlite3.connect(db) as conn:
            ok = conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            stored = conn.execute("SELECT COUNT(*) FROM candidates").fetchone()[0]
        mid_sweep += 0 < stored < 13
        resumed = subprocess.run([sys.executable, "-c", SWEEP.replace("store=sys.argv[1],", "store=sys.argv[1], resume=True,"),
                                  str(db)], env=env, stderr=subprocess.DEVNULL)
        with sqlite3.connect(db) as conn:
            complete = conn.execute("SELECT COUNT(*) FROM candidates c JOIN runs r ON r.id = c.run_id "
                                    "WHERE r.status = 'finished'").fetchone()[0] == 13
        survived += ok and resumed.returncode == 0 and complete
    print(f"kill -9 trials: {survived} of {trials} stores passed the integrity check and resumed to a complete run "
          f"({mid_sweep} killed with the sweep part-way)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--kill-trials", type=int, default=0)
    args = parser.parse_args()
    print(f"{datetime.date.today()}  {platform.processor() or platform.machine()}  python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="hone-soak-") as tmp:
        soak(args.candidates, Path(tmp))
        if args.kill_trials:
            kill_trials(args.kill_trials, Path(tmp))


if __name__ == "__main__":
    main()
