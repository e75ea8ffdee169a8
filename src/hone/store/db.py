"""The run store: every candidate result is written as soon as it exists, so a run that dies
half-way can be resumed and a finished one re-rendered without re-running anything.

Reading a run never needs the plugins: a recipe is rebuilt through the registry where it can be
(exactly, or not at all), and otherwise keeps its stored config dict, so its key never changes.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hone._pids import alive
from hone.config import Config
from hone.errors import HoneError, InputError, StoreError
from hone.search.recipe import Recipe, Step
from hone.search.result import CandidateResult
from hone.search.run import OptimizeResult, RunInfo
from hone.search.select import select
from hone.store.schema import migrate

# How a run can end: the sweep finished, the user interrupted it, or its eager control failed.
RUN_END_STATES = ("finished", "interrupted", "harness_error")
ENV_VAR = "HONE_DB"
DEFAULT_PATH = Path("hone-runs") / "hone.db"
BUSY_TIMEOUT_S = 30.0  # another process holding the write lock (a second `hone` on the same db)
MAX_IDS_IN_HINT = 20

# What rebuilding a step through the registry may raise when a plugin is missing, renamed, broken
# mid-edit or newer than the stored config. Any of them means "keep the stored dict", never
# "cannot read the run".
_RESOLVE_ERRORS = (HoneError, ImportError, SyntaxError, AttributeError, KeyError, TypeError, ValueError)


def default_store_path() -> Path:
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_PATH



def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _dumps(obj: Any) -> str:
    # default=str: runner_info is free-form (a backend may report a dtype or a Path); recording
    # it as text beats losing the whole result. NaN stays NaN here so a round trip is exact.
    return json.dumps(obj, default=str)


def _canonical(obj: Any) -> str:
    # Tuples become lists through JSON, as they do in Recipe.key.
    return json.dumps(obj, sort_keys=True, default=str)


@dataclasses.dataclass(frozen=True)
class StoredConfig(Config):
    """A step config this hone cannot rebuild (plugin not importable, or it would not rebuild to
    the same dict): kept verbatim, so `to_dict()` and therefore `Recipe.key` are unchanged."""

    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StoredConfig":
        return cls(dict(data))

    def __hash__(self) -> int:  # a dict field is unhashable; Steps and Recipes must stay hashable
        return hash(_canonical(self.data))


def _stored_step(d: dict[str, Any]) -> Step:
    return Step(d["name"], StoredConfig(copy.deepcopy(d["config"])))


def _resolved_step(registry: Any, d: dict[str, Any]) -> Step:
    try:
        config = registry.get(d["name"]).Config.from_dict(d["config"])
    except _RESOLVE_ERRORS:
        return _stored_step(d)
    # A newer plugin may add defaulted fields: the rebuilt config would then hash to another
    # key and resume would not recognise the step, so only an exact rebuild is accepted.
    if _canonical(config.to_dict()) != _canonical(d["config"]):
        return _stored_step(d)
    return Step(d["name"], config)


def recipe_from_dict(data: dict[str, Any], *, resolve: bool = True) -> Recipe:
    """Rebuild a stored recipe with the same key, whether or not its plugins are importable.

    resolve=False skips the registry entirely (listing runs must not import every plugin).
    """
    if resolve:
        from hone.registry import PASSES, RUNTIMES

        passes = tuple(_resolved_step(PASSES, d) for d in data["passes"])
        runtime = _resolved_step(RUNTIMES, data["runtime"])
    else:
        passes = tuple(_stored_step(d) for d in data["passes"])
        runtime = _stored_step(data["runtime"])
    return Recipe(
        label=data["label"],
        passes=passes,
        runtime=runtime,
        origin=data.get("origin", ""),
        compute_dtype=data.get("compute_dtype", "float32"),
        cost=data.get("cost", 1.0),
        # Runs stored before the field existed marked the baseline by its label.
        baseline=data.get("baseline", data["label"] == "eager" and not data["passes"]),
    )


def _result_from_dict(data: dict[str, Any], resolve: bool) -> CandidateResult:
    return CandidateResult.from_dict(data, recipe_from=lambda d: recipe_from_dict(d, resolve=resolve))


def _id_hint(ids: list[int]) -> str:
    if not ids:
        return "the store holds no runs"
    shown = ", ".join(map(str, ids[-MAX_IDS_IN_HINT:]))
    if len(ids) > MAX_IDS_IN_HINT:
        return f"stored runs: ... {shown} ({len(ids)} in all; `hone report --list`)"
    return f"stored runs: {shown}"


class Store:
    """One SQLite file of runs. Every write is one transaction; use as a context manager."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path is not None else default_store_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Transactions are explicit (_tx), so the sqlite3 module must not open its own.
        self._conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.RLock()  # the sweep may record from a worker-watching thread
        try:
            # WAL: readers (`hone report` in another terminal) never block the sweep's writes.
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            migrate(self._conn, self.path)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StoreError(f"cannot open run store {self.path}: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction. IMMEDIATE takes the write lock up front, so two runs
        writing one store queue for it (up to BUSY_TIMEOUT_S) instead of failing mid-way."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # locked past the busy timeout
                raise StoreError(f"run store {self.path}: {exc} (another process held it over {BUSY_TIMEOUT_S:g} s)",
                                 hint="another hone run or a sqlite3 shell holds a write transaction open; "
                                      "close it, or use another --db") from None
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def artifacts_dir(self, run_id: int) -> Path:
        """Where the workers of run `run_id` save their artifacts (the winner's stays there):
        `<store folder>/artifacts/run-<id>/`, beside the store so a stored run can be exported
        later."""
        return self.path.parent / "artifacts" / f"run-{run_id}"

    # -- writing ------------------------------------------------------------------------------

    def start_run(self, info: RunInfo, run_key: str) -> int:
        """Create the run row; sets info.run_id and info.created_at."""
        created = _now()
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO runs (created_at, status, model, run_key, fingerprint, info_json)"
                " VALUES (?, 'running', ?, ?, ?, '{}')",
                (created, info.model, run_key, info.fingerprint),
            )
            run_id = int(cur.lastrowid)  # type: ignore[arg-type]
            data = {**info.to_dict(), "run_id": run_id, "created_at": created}
            c.execute("UPDATE runs SET info_json = ? WHERE id = ?", (_dumps(data), run_id))
        info.run_id, info.created_at = run_id, created
        return run_id

    def record(self, run_id: int, result: CandidateResult) -> None:
        """Insert or replace the result of (recipe, input set) in this run."""
        data = result.to_dict()
        m = result.measurement
        p50 = m.p50 if m is not None and m.n else None
        row = (
            run_id,
            data["recipe_key"],
            result.input_set,
            result.recipe.label,
            result.status.value,
            result.reason,
            p50,
            _dumps(data["recipe"]),
            _dumps(data["verdict"]) if data["verdict"] else None,
            _dumps(data["measurement"]) if data["measurement"] else None,
            _dumps(data["runner_info"]),
            _dumps(data),
            _now(),
        )
        try:
            with self._tx() as c:
                c.execute("DELETE FROM in_flight WHERE run_id = ? AND recipe_key = ? AND input_set = ?",
                          (run_id, data["recipe_key"], result.input_set))
                c.execute(
                    """
                    INSERT INTO candidates (run_id, recipe_key, input_set, label, status, reason,
                        p50_s, recipe_json, verdict_json, measurement_json, runner_info_json,
                        result_json, recorded_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (run_id, recipe_key, input_set) DO UPDATE SET
                        label = excluded.label, status = excluded.status, reason = excluded.reason,
                        p50_s = excluded.p50_s, recipe_json = excluded.recipe_json,
                        verdict_json = excluded.verdict_json,
                        measurement_json = excluded.measurement_json,
                        runner_info_json = excluded.runner_info_json,
                        result_json = excluded.result_json, recorded_at = excluded.recorded_at
                    """,
                    row,
                )
        except sqlite3.IntegrityError as exc:  # the foreign key: only start_run creates runs
            raise StoreError(f"no run {run_id} in {self.path} to record into") from exc

    def start_job(self, run_id: int, recipe: Recipe, input_sets: list[str]) -> None:
        """Journal a worker's start: its sets stay in flight until their results are recorded."""
        now, pid = _now(), os.getpid()
        with self._tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO in_flight (run_id, recipe_key, input_set, label, started_at, pid) "
                "VALUES (?, ?, ?, ?, ?, ?)", [(run_id, recipe.key, s, recipe.label, now, pid) for s in input_sets])

    def end_job(self, run_id: int, recipe: Recipe) -> None:
        """The worker ended: sets it left out on purpose (it stopped at a failure) are not in flight."""
        with self._tx() as c:
            c.execute("DELETE FROM in_flight WHERE run_id = ? AND recipe_key = ?", (run_id, recipe.key))

    def in_flight(self, run_id: int) -> list[dict[str, Any]]:
        """What the run started and never recorded: in a run that is not running any more, the
        candidates a kill interrupted (label, input_set, recipe_key, started_at, pid)."""
        rows = self._query("SELECT label, input_set, recipe_key, started_at, pid FROM in_flight WHERE run_id = ? "
                           "ORDER BY started_at, label, input_set", (run_id,))
        return [dict(zip(("label", "input_set", "recipe_key", "started_at", "pid"), row)) for row in rows]

    def forget_in_flight(self, run_id: int) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM in_flight WHERE run_id = ?", (run_id,))

    def update_info(self, run_id: int, info: RunInfo) -> None:
        """Rewrite the run's description (what was learnt during the sweep: budget skips)."""
        data = {**info.to_dict(), "run_id": run_id}
        with self._tx() as c:
            if c.execute("UPDATE runs SET info_json = ? WHERE id = ?", (_dumps(data), run_id)).rowcount == 0:
                raise StoreError(f"no run {run_id} in {self.path} to update")

    def finish_run(self, run_id: int, status: str = "finished") -> None:
        if status not in RUN_END_STATES:
            raise ValueError(f"a run ends {' or '.join(map(repr, RUN_END_STATES))}, not {status!r}")
        with self._tx() as c:
            cur = c.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", (status, _now(), run_id)
            )
            if cur.rowcount == 0:
                raise StoreError(f"no run {run_id} in {self.path} to finish")

    # -- reading ------------------------------------------------------------------------------

    def find_resumable(self, run_key: str) -> int | None:
        """The latest unfinished run of the same model, settings and machine, if any."""
        rows = self._query(
            # A run stopped by a harness error is over: resuming would reuse its rejected control.
            "SELECT id FROM runs WHERE run_key = ? AND status NOT IN ('finished', 'harness_error') "
            "ORDER BY id DESC LIMIT 1",
            (run_key,),
        )
        return int(rows[0][0]) if rows else None

    def _results(self, run_id: int, *, resolve: bool) -> list[CandidateResult]:
        rows = self._query("SELECT result_json FROM candidates WHERE run_id = ? ORDER BY rowid", (run_id,))
        return [_result_from_dict(json.loads(r[0]), resolve) for r in rows]

    def results(self, run_id: int) -> list[CandidateResult]:
        """The run's results with step configs as stored (no plugin imported)."""
        return self._results(run_id, resolve=False)

    def runs_on(self, fingerprint: str, limit: int) -> list[tuple[int, str, dict[str, Any]]]:
        """(id, status, info) of the latest `limit` runs on the machine with this fingerprint,
        newest first."""
        rows = self._query("SELECT id, status, info_json FROM runs WHERE fingerprint = ? ORDER BY id DESC LIMIT ?",
                           (fingerprint, limit))
        return [(int(i), str(st), json.loads(info)) for i, st, info in rows]

    def completed(self, run_id: int) -> dict[tuple[str, str], CandidateResult]:
        """Every recorded result of the run, keyed by (recipe key, input set)."""
        return {(r.recipe.key, r.input_set): r for r in self._results(run_id, resolve=True)}

    def run_ids(self) -> list[int]:
        return [int(r[0]) for r in self._query("SELECT id FROM runs ORDER BY id")]

    def run_status(self, run_id: int) -> str:
        rows = self._query("SELECT status FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise InputError(f"no run {run_id} in {self.path}", hint=_id_hint(self.run_ids()))
        return str(rows[0][0])

    def load_run(self, run_id: int | None = None, *, resolve: bool = True) -> OptimizeResult:
        """A stored run with its selection recomputed; None means the latest run.

        resolve=False keeps every step config as stored (StoredConfig) and imports no plugin:
        enough to report a run, not to rebuild it.
        """
        sql = "SELECT id, created_at, info_json FROM runs "
        rows = (
            self._query(sql + "ORDER BY id DESC LIMIT 1")
            if run_id is None
            else self._query(sql + "WHERE id = ?", (run_id,))
        )
        if not rows:
            what = f"no run {run_id} in {self.path}" if run_id is not None else f"no runs in {self.path}"
            hint = _id_hint(self.run_ids()) if run_id is not None else "run `hone optimize` first"
            raise InputError(what, hint=hint)
        found_id, created_at, info_json = rows[0]
        info = RunInfo.from_dict(json.loads(info_json))
        info.run_id, info.created_at = int(found_id), created_at  # the row is the truth
        for row in self.in_flight(info.run_id):  # a live run's are running now; a killed run's, interrupted
            state = "running now" if alive(row["pid"]) else "interrupted (its run was killed); --resume runs it again"
            info.warnings.append(f"{row['label']} @ {row['input_set']}: {state} (started {row['started_at']})")
        return OptimizeResult.from_results(info, self._results(info.run_id, resolve=resolve))

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest runs, newest first: id, created_at, finished_at, model, status,
        candidates (how many results) and best (the winner's label, or None)."""
        rows = self._query(
            """
            SELECT r.id, r.created_at, r.finished_at, r.model, r.status, r.info_json, COUNT(c.run_id)
            FROM runs r LEFT JOIN candidates c ON c.run_id = r.id
            GROUP BY r.id ORDER BY r.id DESC LIMIT ?
            """,
            (limit,),
        )
        runs = []
        for run_id, created_at, finished_at, model, status, info_json, n in rows:
            incumbent = json.loads(info_json).get("incumbent")
            best = select(self._results(run_id, resolve=False), incumbent).best if n else None
            runs.append(
                {
                    "id": int(run_id),
                    "created_at": created_at,
                    "finished_at": finished_at,
                    "model": model,
                    "status": status,
                    "candidates": int(n),
                    "best": best.label if best else None,
                }
            )
        return runs
