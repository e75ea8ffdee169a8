"""The serving sweep at the end of `hone optimize --serve-sweep`: its settings, checked before
any work, and the sweep over the run's top candidates, stored with the run."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from hone._optional import require
from hone.errors import InputError
from hone.report.progress import SweepProgress
from hone.search.run import OptimizeResult
from hone.serve.sweep import ServeSweepSettings, candidates_from_result, run_serving_sweep
from hone.store.resume import open_store


def serving_settings(serve_sweep: Any, max_p99_ms: float | None) -> ServeSweepSettings | None:
    """`hone.optimize(serve_sweep=...)` as settings, checked (and the serve extra present)
    before any work; its p99 target defaults to the run's `max_p99_ms`."""
    if serve_sweep is None or serve_sweep is False:
        return None
    settings = ServeSweepSettings() if serve_sweep is True else serve_sweep
    if not isinstance(settings, ServeSweepSettings):
        raise InputError(f"serve_sweep takes True or a ServeSweepSettings, not {type(serve_sweep).__name__}")
    for package in ("mosec", "aiohttp", "msgpack"):
        require(package)
    if settings.max_p99_ms is None and max_p99_ms is not None:
        settings = dataclasses.replace(settings, max_p99_ms=max_p99_ms)
    return settings


def serve_top(result: OptimizeResult, settings: ServeSweepSettings, store: Any, progress: bool) -> None:
    """The serving sweep over the run's top candidates, stored with the run (RunInfo.serving).
    A sweep that finds nothing to serve says why in the run's warnings; the run stays finished."""
    candidates, why_not = candidates_from_result(result, settings.top)
    result.run.warnings += [f"not served: {why}" for why in why_not]
    if candidates:
        with open_store(store) as db, tempfile.TemporaryDirectory(prefix="hone-serve-") as tmp, \
                SweepProgress(enabled=progress) as shown:
            logs = db.artifacts_dir(result.run.run_id) / "serving" if db else Path(tmp)
            shown.stage("serving sweep: the top candidates behind a real server")
            price = result.selection.constraints.price  # the run's, when it was priced
            sweep = run_serving_sweep(candidates, settings, logs, result.run.threads, progress=shown.stage, price=price)
            result.run.serving = sweep.to_dict()
    elif not why_not:
        result.run.warnings.append("serving sweep not run: no candidate passed validation")
    with open_store(store) as db:
        if db and result.run.run_id is not None:
            db.update_info(result.run.run_id, result.run)
