"""MetaSchedule tuning for the TVM runtime, with its database cached per model and machine.

The database lives in `$HONE_CACHE_DIR/tvm/<key>` (else `~/.cache/hone/tvm/<key>`), where the key
hashes the fused Relax module's text (its structure and shapes, not the weights: schedules do
not depend on weight values), the target (CPU model and core count) and the TVM version. A later
build of the same model on the same machine reads the records back: when they already hold the
requested number of trials, tuning is skipped; when they hold fewer, tuning tops them up.

How tuning runs, and why:
- Candidates are compiled in this process (`InProcessBuilder`). MetaSchedule's LocalBuilder starts
  a fresh pool of Python workers for every batch, and each worker imports
  `tvm.s_tir.tensor_intrin`, which parses every target's tensor intrinsics (70 s here, 48 s of
  them CUDA's): each batch then hit the builder's 30 s timeout and failed.
- For the same reason the intrinsics package is imported here without its `__init__`, with only
  the x86 intrinsics that the CPU schedule rules look up (`import_cpu_tensor_intrinsics`).
- Candidates are measured by MetaSchedule's LocalRunner: one child process for the whole tuning
  (a crashing candidate cannot take the build down), with TVM_NUM_THREADS = the candidate's
  threads, shut down afterwards.
- The search is scaled to the budget: trials per round = budget / tasks (every task gets some
  before the scheduler chases the slow ones), and a smaller evolutionary search than the default
  (population 16 per trial of a round, 64 to 512, instead of 512; 2 genetic iterations instead
  of 4), whose sampling alone cost seconds per task and round.
- The cost model is XGBoost's when `xgboost` is importable (MetaSchedule's default), else a
  random one; which one ran is reported. XGBoost's predicts only after 100 measured trials, so
  below that budget the two search alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hone._optional import is_available
from hone.hardware.peaks import CACHE_ENV, DEFAULT_CACHE_DIR

MAX_TRIALS_PER_ROUND = 64  # MetaSchedule's default num_trials_per_iter
# Evolutionary search population: MetaSchedule's default is 512, sized for thousands of trials.
POPULATION_PER_TRIAL = 16
MIN_POPULATION, MAX_POPULATION = 64, 512
SEED = 0  # a fixed search seed: the same budget explores the same candidates (timings still vary)
_LOGGER = "tvm.s_tir.meta_schedule"
_INTRINSICS = "tvm.s_tir.tensor_intrin"


@dataclasses.dataclass
class TuningOutcome:
    database: Any  # ms.database.JSONDatabase
    path: Path
    seconds: float  # spent tuning in this build (0 when the records sufficed)
    trials_run: int  # trials measured in this build
    records: int  # records in the database afterwards
    reused: bool  # the database already held records for this model and machine
    tasks: int
    cost_model: str

    def info(self) -> dict[str, Any]:
        return {
            "tuning_s": round(self.seconds, 3),
            "tuning_trials_run": self.trials_run,
            "tuning_records": self.records,
            "tuning_db": str(self.path),
            "tuning_db_reused": self.reused,
            "tuning_tasks": self.tasks,
            "tuning_cost_model": self.cost_model,
        }


def cache_root() -> Path:
    """Where tuning databases live: $HONE_CACHE_DIR/tvm, else ~/.cache/hone/tvm."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR).expanduser() / "tvm"


def database_key(mod: Any, target_json: str) -> str:
    """Hash of what decides the schedules: the fused module's text (shapes and structure; the
    weights print as references, so a retrained model shares its database), the target, TVM."""
    import tvm

    body = json.dumps({"module": mod.script(show_meta=False), "target": target_json, "tvm": tvm.__version__})
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def tune(mod: Any, target: Any, target_json: str, trials: int, threads: int) -> TuningOutcome:
    """Tune `mod` (fused Relax, before lowering) for `target` until its cached database holds
    `trials` records; returns the database to apply."""
    import_cpu_tensor_intrinsics()
    from tvm.s_tir import meta_schedule as ms

    path = cache_root() / database_key(mod, target_json)
    path.mkdir(parents=True, exist_ok=True)
    tasks = ms.relax_integration.extract_tasks(mod, target)
    cost_model = "xgb" if is_available("xgboost") else "random"
    # One tuner per database at a time: a second process waits, then reuses what the first wrote.
    with _locked(path / ".lock"):
        database = ms.database.JSONDatabase(work_dir=str(path))
        before = len(database.get_all_tuning_records())
        wanted = trials - before
        start = time.perf_counter()
        if wanted > 0 and tasks:
            _run_search(ms, tasks, database, str(path), wanted, threads, cost_model)
        seconds = time.perf_counter() - start if wanted > 0 and tasks else 0.0
        records = len(database.get_all_tuning_records())
    return TuningOutcome(database, path, seconds, records - before, records, before > 0, len(tasks), cost_model)


def _run_search(ms: Any, tasks: list, database: Any, work_dir: str, trials: int, threads: int, cost_model: str) -> None:
    per_round = max(1, min(MAX_TRIALS_PER_ROUND, trials // len(tasks)))
    population = max(MIN_POPULATION, min(MAX_POPULATION, POPULATION_PER_TRIAL * per_round))
    strategy = ms.search_strategy.EvolutionarySearch(
        population_size=population, init_min_unmeasured=min(50, population // 4), genetic_num_iters=2
    )
    with _quiet_console(), environ(TVM_NUM_THREADS=str(threads)):  # the runner's child sizes its pool from it
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            tasks, work_dir, strategy=strategy, num_threads=threads, seed=SEED
        )
        runner = ms.runner.LocalRunner()
        try:
            ms.tune.tune_tasks(
                tasks=contexts, task_weights=weights, work_dir=work_dir, max_trials_global=trials,
                num_trials_per_iter=per_round, builder=in_process_builder(), runner=runner,
                database=database, cost_model=ms.cost_model.CostModel.create(cost_model, num_tuning_cores=threads),
            )
        finally:
            runner.pool.shutdown()


def applied_functions(mod: Any) -> int:
    """How many TIR functions of `mod` carry a schedule from the database (read back, not assumed)."""
    import tvm

    return sum(
        1 for _, func in mod.functions_items()
        if isinstance(func, tvm.tirx.PrimFunc) and func.attrs is not None and func.attrs.get("tirx.is_scheduled", False)
    )


def import_cpu_tensor_intrinsics() -> None:
    """Register the x86 tensor intrinsics (the CPU schedule rules look up VNNI/AVX-512 ones)
    without the package's `__init__`, which also parses every GPU and DSP target's (~70 s)."""
    if _INTRINSICS in sys.modules:
        return
    importlib.import_module("tvm.s_tir")  # the parent package must exist first

    sys.modules[_INTRINSICS] = importlib.util.module_from_spec(importlib.util.find_spec(_INTRINSICS))
    importlib.import_module(f"{_INTRINSICS}.x86")


def in_process_builder() -> Any:
    """A MetaSchedule builder that compiles each candidate in this process (see the module doc)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build, default_export

    @derived_object
    class InProcessBuilder(PyBuilder):
        def build(self, build_inputs: list) -> list:
            results = []
            for item in build_inputs:
                try:
                    results.append(BuilderResult(default_export(default_build(item.mod, item.target, None)), None))
                except Exception as exc:  # a candidate that does not compile is a failed trial, not a failed tune
                    results.append(BuilderResult(None, f"in-process build failed: {exc}"))
            return results

    return InProcessBuilder()


@contextlib.contextmanager
def _quiet_console() -> Iterator[None]:
    """MetaSchedule logs every round to stdout at the level of its logger (DEBUG when unset);
    hone keeps the console for its own progress. The full logs still go to `<db>/logs`. The
    file handlers it installs are closed afterwards, so no file stays open in this process."""
    root = logging.getLogger(_LOGGER)
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(level)
        for name in [_LOGGER, *(n for n in logging.root.manager.loggerDict if n.startswith(_LOGGER + "."))]:
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                if (handler.get_name() or "").startswith(_LOGGER):  # the ones MetaSchedule added
                    logger.removeHandler(handler)
                    handler.close()


@contextlib.contextmanager
def environ(**values: str) -> Iterator[None]:
    """Set environment variables for the block, then put back what was there."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
