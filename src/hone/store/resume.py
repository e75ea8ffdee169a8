"""Opening the run store for a run, and starting a run or resuming the one it continues.

`run_key` is what makes two runs "the same run" for `--resume`; `start_or_resume` reports what
a killed run left in flight (Store.in_flight) and refuses a run whose process still lives.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from hone._pids import alive
from hone.errors import InputError
from hone.search.result import CandidateResult
from hone.search.run import RunInfo
from hone.store.db import Store, default_store_path


def run_key(info: RunInfo) -> str:
    """Identity of "the same run" for --resume: model, inputs, settings, machine, library
    versions (a run resumed under another torch would mix figures of two)."""
    # The set of recipes, not their order: the order follows the profile, which varies with noise.
    settings = {**info.settings, "recipes": sorted(info.settings.get("recipes", []))}
    # Provenance too: the same model spec with other calibration or eval files is another run.
    body = {"model": info.model, "inputs": info.input_sets, "settings": settings, "fp": info.fingerprint,
            "provenance": info.provenance, "versions": info.versions}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _NoStore:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def open_store(store: Any, *, existing_only: bool = False) -> Any:
    """The store as a context (None inside for store=False). `existing_only`: None too when the
    file is not there yet, so a read before any work creates nothing (a run that then fails on
    bad input leaves no store behind)."""
    if store is False:
        return _NoStore()
    path = Path(store) if store not in (None, True) else default_store_path()
    if existing_only and not path.exists():
        return _NoStore()
    return Store(path)


def start_or_resume(db: Store | None, info: RunInfo, resume: bool
                    ) -> tuple[int | None, dict[tuple[str, str], CandidateResult]]:
    """(run id, the results it already holds): a new run, or with `resume` the latest unfinished
    run of the same key, its in-flight candidates reported as interrupted and run again."""
    if db is None:
        return None, {}
    key = run_key(info)
    if resume:
        run_id = db.find_resumable(key)
        if run_id is not None:
            interrupted = db.in_flight(run_id)
            live = sorted({row["pid"] for row in interrupted if row["pid"] != os.getpid() and alive(row["pid"])})
            if live:
                raise InputError(f"run {run_id} is still running (process {', '.join(map(str, live))})",
                                 hint="wait for it to finish, or start a new run without --resume")
            info.run_id = run_id
            info.created_at = db.load_run(run_id, resolve=False).run.created_at
            info.warnings.extend(f"interrupted in run {run_id}: {row['label']} @ {row['input_set']} "
                                 f"(started {row['started_at']}); run again" for row in interrupted)
            db.forget_in_flight(run_id)
            return run_id, db.completed(run_id)
    return db.start_run(info, key), {}

