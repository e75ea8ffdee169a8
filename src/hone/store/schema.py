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

RUN_STATUSES = ("running", "finished", "interrupted")


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        f"""
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL CHECK (status IN {RUN_STATUSES!r}),
            model TEXT NOT NULL,
            run_key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            info_json TEXT NOT NULL
        )"""
    )
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


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1]
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
