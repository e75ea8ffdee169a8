"""The run store: exact round trips, upsert, resume lookup, schema versions, clear errors."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from results_factory import (
    EAGER,
    INDUCTOR,
    FakeCompileConfig,
    FakePluginV2,
    make_info,
    make_measurement,
    make_results,
    passing_verdict,
    teach_registry,
)

from hone.errors import InputError, StoreError
from hone.search.result import CandidateResult, Status
from hone.search.select import select
from hone.store import Store, StoredConfig, default_store_path, recipe_from_dict
from hone.store import schema


@pytest.fixture(autouse=True)
def _registry(monkeypatch):
    # Only the fake plugin is known: the store must not depend on which plugins exist today.
    teach_registry(monkeypatch)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "nested" / "hone.db") as s:
        yield s


def _run(store: Store, key: str = "key-a", results=None) -> int:
    run_id = store.start_run(make_info(), key)
    for r in make_results() if results is None else results:
        store.record(run_id, r)
    return run_id


def test_store_creates_its_folder_in_wal_mode(tmp_path):
    path = tmp_path / "a" / "b" / "hone.db"
    with Store(path) as s:
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert path.exists()


def test_default_store_path_honours_env(monkeypatch, tmp_path):
    monkeypatch.delenv("HONE_DB", raising=False)
    assert default_store_path() == Path("hone-runs") / "hone.db"
    monkeypatch.setenv("HONE_DB", str(tmp_path / "x.db"))
    assert default_store_path() == tmp_path / "x.db"


def test_start_run_sets_id_and_time(store):
    info = make_info()
    run_id = store.start_run(info, "k")
    assert info.run_id == run_id and info.created_at
    assert store.run_status(run_id) == "running"


def test_round_trip_every_status_field_by_field(store):
    original = make_results()
    assert {r.status for r in original} == set(Status)
    run_id = _run(store)
    store.finish_run(run_id)
    loaded = store.load_run(run_id)

    assert loaded.run.run_id == run_id
    info = make_info()
    info.run_id, info.created_at = run_id, loaded.run.created_at
    assert loaded.run == info
    assert len(loaded.results) == len(original)
    for a, b in zip(original, loaded.results):
        assert b.recipe.key == a.recipe.key
        assert json.dumps(b.recipe.to_dict(), sort_keys=True) == json.dumps(a.recipe.to_dict(), sort_keys=True)
        for field in ("label", "origin", "compute_dtype"):
            assert getattr(b.recipe, field) == getattr(a.recipe, field)
        for field in dataclasses.fields(CandidateResult):
            if field.name != "recipe":
                assert getattr(b, field.name) == getattr(a, field.name), field.name
        assert b.status is a.status
    sel_a, sel_b = loaded.selection, select(original)
    assert sel_a.best.key == sel_b.best.key == INDUCTOR.key
    assert (sel_a.why_best, sel_a.why_runner_up, sel_a.losers) == (sel_b.why_best, sel_b.why_runner_up, sel_b.losers)


def test_crashed_result_keeps_log_tail(store):
    run_id = _run(store)
    crashed = [r for r in store.load_run(run_id).results if r.status is Status.CRASHED]
    assert crashed and all(r.log_tail for r in crashed)
    assert "Segmentation fault" in crashed[0].log_tail


def test_record_upserts(store):
    run_id = store.start_run(make_info(), "k")
    store.record(run_id, CandidateResult(EAGER, "bs1", Status.CRASHED, "killed by signal SIGKILL"))
    ok = CandidateResult(EAGER, "bs1", Status.OK, "reference", passing_verdict(0.0), make_measurement(0.01))
    store.record(run_id, ok)
    done = store.completed(run_id)
    assert list(done) == [(EAGER.key, "bs1")]
    assert done[(EAGER.key, "bs1")].status is Status.OK
    assert done[(EAGER.key, "bs1")].measurement == ok.measurement
    assert len(store.load_run(run_id).results) == 1
    row = store._conn.execute("SELECT status, p50_s FROM candidates").fetchall()
    assert row == [("ok", pytest.approx(0.01))]


def test_completed_returns_what_was_recorded(store):
    results = make_results()[:4]
    run_id = _run(store, results=results)
    done = store.completed(run_id)
    assert set(done) == {(r.recipe.key, r.input_set) for r in results}
    for r in results:
        assert done[(r.recipe.key, r.input_set)].status is r.status
    assert store.completed(_run(store, results=[])) == {}


def test_find_resumable_only_unfinished_runs_of_the_same_key(store):
    assert store.find_resumable("a") is None
    first = _run(store, "a", [])
    later = _run(store, "a", [])
    other = _run(store, "b", [])
    assert store.find_resumable("a") == later  # the latest unfinished one
    store.finish_run(later)
    assert store.find_resumable("a") == first
    store.finish_run(first, "interrupted")
    assert store.find_resumable("a") == first  # interrupted runs are resumable
    store.finish_run(first)
    assert store.find_resumable("a") is None
    assert store.find_resumable("b") == other
    store.finish_run(other, "harness_error")  # its control failed: over, never resumed
    assert store.find_resumable("b") is None
    with pytest.raises(ValueError, match="harness_error"):
        store.finish_run(other, "done")
    assert store.find_resumable("c") is None


def test_finish_run_checks_its_arguments(store):
    run_id = _run(store, results=[])
    with pytest.raises(ValueError):
        store.finish_run(run_id, "running")
    with pytest.raises(StoreError):
        store.finish_run(run_id + 1)


def test_record_into_unknown_run_creates_nothing(store):
    with pytest.raises(StoreError, match="no run 42"):
        store.record(42, make_results()[0])
    assert store._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    assert store._conn.execute("SELECT COUNT(*) FROM candidates").fetchone()[0] == 0


def test_load_run_latest_and_unknown(store):
    with pytest.raises(InputError, match="no runs"):
        store.load_run()
    _run(store, "a", [])
    second = _run(store, "b")
    assert store.load_run().run.run_id == second
    with pytest.raises(InputError) as err:
        store.load_run(99)
    assert "no run 99" in str(err.value) and "stored runs: 1, 2" in str(err.value)


def test_list_runs(store):
    empty = _run(store, "a", [])
    full = _run(store, "b")
    store.finish_run(full)
    runs = store.list_runs()
    assert [r["id"] for r in runs] == [full, empty]
    assert runs[0]["status"] == "finished" and runs[0]["candidates"] == len(make_results())
    assert runs[0]["best"] == "inductor" and runs[0]["model"] == "minilm"
    assert runs[1]["status"] == "running" and runs[1]["candidates"] == 0 and runs[1]["best"] is None
    assert len(store.list_runs(limit=1)) == 1


def test_runner_info_that_is_not_json_is_kept_as_text(store):
    r = dataclasses.replace(make_results()[0], runner_info={"workdir": Path("/tmp/x")})
    run_id = _run(store, results=[r])
    assert store.load_run(run_id).results[0].runner_info == {"workdir": "/tmp/x"}


# -- schema versions --------------------------------------------------------------------------


def test_fresh_store_is_at_current_version(tmp_path):
    with Store(tmp_path / "s.db") as s:
        assert schema.read_version(s._conn) == schema.SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "s.db"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (schema.SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(StoreError, match="newer than this hone"):
        Store(path)


def test_a_later_migration_upgrades_in_place(tmp_path, monkeypatch):
    path = tmp_path / "s.db"
    with Store(path) as s:
        run_id = _run(s)

    def add_notes(conn):
        conn.execute("ALTER TABLE runs ADD COLUMN notes TEXT")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, add_notes])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(schema.MIGRATIONS))
    with Store(path) as s:
        assert schema.read_version(s._conn) == schema.SCHEMA_VERSION
        assert "notes" in [c[1] for c in s._conn.execute("PRAGMA table_info(runs)")]
        assert len(s.load_run(run_id).results) == len(make_results())


def test_a_version_1_store_upgrades_and_keeps_its_runs_and_candidates(tmp_path, monkeypatch):
    path = tmp_path / "s.db"
    with monkeypatch.context() as m:  # a store written by a hone that knew version 1 only
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
        m.setattr(schema, "SCHEMA_VERSION", 1)
        with Store(path) as s:
            # This Store's writes clear the in-flight journal (version 3); the version 1 file has
            # none, so a journal for this connection only, gone when it closes.
            s._conn.execute("CREATE TEMP TABLE in_flight (run_id, recipe_key, input_set, label, started_at, pid)")
            run_id = _run(s)
            with pytest.raises(sqlite3.IntegrityError):
                s.finish_run(run_id, "harness_error")  # version 1 had no such status
    with Store(path) as s:
        assert schema.read_version(s._conn) == schema.SCHEMA_VERSION
        assert len(s.load_run(run_id).results) == len(make_results())  # no cascade when runs was rebuilt
        s.finish_run(run_id, "harness_error")
        assert s.run_status(run_id) == "harness_error"
        assert s._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1  # restored after the rebuild


def test_not_a_database(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open run store"):
        Store(path)


# -- recipes survive whatever the registry knows -----------------------------------------------


def test_recipe_key_survives_without_the_registry(monkeypatch):
    data = INDUCTOR.to_dict()
    for resolve in (False, True):
        rebuilt = recipe_from_dict(data, resolve=resolve)
        assert rebuilt.key == INDUCTOR.key
    teach_registry(monkeypatch, plugin=type("Other", (), {"name": "other"}))
    rebuilt = recipe_from_dict(data)
    assert isinstance(rebuilt.runtime.config, StoredConfig)
    assert rebuilt.key == INDUCTOR.key
    assert rebuilt.runtime.config.to_dict() == INDUCTOR.runtime.config.to_dict()
    hash(rebuilt)  # recipes stay usable as dict keys


def test_recipe_rebuilt_through_the_registry_when_it_knows_the_name(store):
    run_id = _run(store, results=[r for r in make_results() if r.recipe.label == "inductor"])
    loaded = store.load_run(run_id).results[0].recipe
    assert isinstance(loaded.runtime.config, FakeCompileConfig)
    assert loaded.runtime.config.mode == "max-autotune"
    assert loaded.key == INDUCTOR.key


def test_load_run_without_resolving(store, monkeypatch):
    from hone.registry import PASSES, RUNTIMES

    def forbidden(name):
        raise AssertionError("the registry was asked")

    run_id = _run(store)
    monkeypatch.setattr(PASSES, "get", forbidden)
    monkeypatch.setattr(RUNTIMES, "get", forbidden)
    loaded = store.load_run(run_id, resolve=False)
    assert [r.recipe.key for r in loaded.results] == [r.recipe.key for r in make_results()]
    assert loaded.selection.best.key == INDUCTOR.key


def test_newer_plugin_config_does_not_change_the_key(monkeypatch):
    teach_registry(monkeypatch, plugin=FakePluginV2)  # would add cudagraphs=False on rebuild
    rebuilt = recipe_from_dict(INDUCTOR.to_dict())
    assert isinstance(rebuilt.runtime.config, StoredConfig)
    assert rebuilt.key == INDUCTOR.key


def test_broken_plugin_does_not_stop_loading(monkeypatch):
    from hone.registry import PASSES, RUNTIMES

    def broken(name):
        raise ImportError("No module named 'hone.runtimes.half_written'")

    monkeypatch.setattr(PASSES, "get", broken)
    monkeypatch.setattr(RUNTIMES, "get", broken)
    rebuilt = recipe_from_dict(INDUCTOR.to_dict())
    assert isinstance(rebuilt.runtime.config, StoredConfig) and rebuilt.key == INDUCTOR.key


# -- builds and artifacts -----------------------------------------------------------------------


def test_build_records_summaries_and_artifacts_are_stored(store):
    run_id = _run(store)
    loaded = {(r.recipe.label, r.input_set): r for r in store.load_run(run_id).results}
    bs8 = loaded[("inductor", "bs8")]
    assert bs8.build == {"index": 0, "built_for": "bs1", "build_s": 12.0, "reused": True}
    assert bs8.summary == ["autotuned 14 kernels"]
    assert bs8.artifact["sha256"] == "ab" * 32 and bs8.artifact["input_sets"] == ["bs1", "bs8"]
    assert loaded[("openvino", "bs1")].build is None and loaded[("openvino", "bs1")].artifact is None
    assert store.load_run(run_id).build_count() == (2, 4)  # eager and inductor, one build each for two sets


def test_artifacts_live_beside_the_store(store):
    assert store.artifacts_dir(3) == store.path.parent / "artifacts" / "run-3"


def test_the_baseline_flag_survives_and_old_runs_mark_it_by_label():
    assert recipe_from_dict(EAGER.to_dict()).baseline is True
    assert recipe_from_dict(INDUCTOR.to_dict()).baseline is False
    old = {k: v for k, v in EAGER.to_dict().items() if k != "baseline"}  # stored before the flag existed
    assert recipe_from_dict(old).baseline is True and recipe_from_dict(old, resolve=False).baseline is True
    relabelled = {**old, "label": "reference"}
    assert recipe_from_dict(relabelled).baseline is False
