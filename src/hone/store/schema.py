"""The store's SQLite schema and its migrations.

MIGRATIONS[i] takes a database from version i to i + 1 (version 0 is an empty file), so a later
hone appends a function and every older store upgrades in place when opened. Each migration
runs in its own transaction together with the version bump: a crash leaves the old version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from hone.errors import StoreError

# Version 1 knew these; version 2 adds "harness_error" (the eager control failed its reference).
_V1_RUN_STATUSES = ("running", "finished", "interrupted")
RUN_STATUSES = (*_V1_RUN_STATUSES, "harness_error")


def _runs_table(name: str, statuses: tuple[str, ...]) -> str:
    return f"""
        CREATE TABLE {name} (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL CHECK (status IN {statuses!r}),
            model TEXT NOT NULL,
            run_key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            info_json TEXT NOT NULL
        )"""


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute(_runs_table("runs", _V1_RUN_STATUSES))
    conn.execute("CREATE INDEX runs_by_key ON runs (run_key, id)")
    # The typed columns duplicate parts of result_json so that a person with `sqlite3` can query
    # the store; result_json alone is what hone reads back.
    conn.execute(
        """
        CREATE TABLE candidates (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            recipe_key TEXT NOT NULL,
            input_set TEXT NOT NULL,
            label TEXT NOT NULL,
            status TEXT NOT NULL,
            reason TEXT NOT NULL,
            p50_s REAL,
            recipe_json TEXT NOT NULL,
            verdict_json TEXT,
            measurement_json TEXT,
            runner_info_json TEXT NOT NULL,
            result_json TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            UNIQUE (run_id, recipe_key, input_set)
        )"""
    )


def _v2(conn: sqlite3.Connection) -> None:
    """A CHECK constraint cannot be altered in SQLite: the runs table is rebuilt (SQLite's
    documented procedure; `migrate` turns foreign keys off around it, so dropping the old table
    does not cascade into the candidates)."""
    conn.execute(_runs_table("runs_v2", RUN_STATUSES))
    conn.execute("INSERT INTO runs_v2 SELECT id, created_at, finished_at, status, model, run_key, fingerprint, info_json FROM runs")
    conn.execute("DROP TABLE runs")
    conn.execute("ALTER TABLE runs_v2 RENAME TO runs")
    conn.execute("CREATE INDEX runs_by_key ON runs (run_key, id)")


def _v3(conn: sqlite3.Connection) -> None:
    """What a run has started and not yet recorded: a row per (recipe, input set) from the start
    of its worker to its result. Rows left by a run that was killed (kill -9, a power cut) are
    the candidates it interrupted: reported as such, and rerun by --resume."""
    conn.execute(
        """
        CREATE TABLE in_flight (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            recipe_key TEXT NOT NULL,
            input_set TEXT NOT NULL,
            label TEXT NOT NULL,
            started_at TEXT NOT NULL,
            pid INTEGER NOT NULL,
            PRIMARY KEY (run_id, recipe_key, input_set)
        )"""
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3]
SCHEMA_VERSION = len(MIGRATIONS)


def read_version(conn: sqlite3.Connection) -> int:
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if not has_table:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the database at `path` to SCHEMA_VERSION; refuse one written by a newer hone.

    `conn` must be in autocommit mode (isolation_level=None): transactions are explicit here.
    """
    version = read_version(conn)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"run store {path} has schema version {version}, newer than this hone ({SCHEMA_VERSION})",
            hint="upgrade hone, or point --db / HONE_DB at another file",
        )
    if version >= SCHEMA_VERSION:
        return
    # Table rebuilds (v2) must not cascade deletes; the pragma is ignored inside a transaction.
    foreign_keys = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    conn.execute("PRAGMA foreign_keys=OFF")
    try:
        _migrate_from(conn, version)
    finally:
        conn.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
    broken = conn.execute("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise StoreError(f"run store {path}: migration left {len(broken)} candidates without their run")


def _migrate_from(conn: sqlite3.Connection, version: int) -> None:
    while version < SCHEMA_VERSION:
        # IMMEDIATE takes the write lock first, so two processes opening a fresh store at once
        # cannot both run the same migration; the loser re-reads the version after the winner.
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = read_version(conn)
            if current != version:
                conn.execute("ROLLBACK")
                version = current
                continue
            MIGRATIONS[version](conn)
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        version += 1
