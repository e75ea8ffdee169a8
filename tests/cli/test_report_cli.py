"""`hone report`: re-render, JSON and list a stored run through the real CLI entry point."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from results_factory import make_info, make_results

from hone.cli import app as cli_app
from hone.store import Store


@pytest.fixture(autouse=True)
def _only_report_command(monkeypatch):
    # Only this command: importing optimize/doctor is not what these tests are about, and costs time.
    monkeypatch.setattr(cli_app, "_register_commands", lambda: importlib.import_module("hone.cli.report"))
    monkeypatch.delenv("HONE_DB", raising=False)


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "hone.db"
    with Store(path) as store:
        first = store.start_run(make_info(), "k")
        store.finish_run(first, "interrupted")
        second = store.start_run(make_info(), "k")
        for r in make_results():
            store.record(second, r)
        store.finish_run(second)
    return path


def test_report_json(db, capsys):
    assert cli_app.main(["report", "--db", str(db), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["schema"] == "hone.run/1" and data["run"]["run_id"] == 2
    assert len(data["candidates"]) == len(make_results())


def test_report_list(db, capsys):
    assert cli_app.main(["report", "--db", str(db), "--list"]) == 0
    out = capsys.readouterr().out
    assert "inductor" in out and "finished" in out and "interrupted" in out
    assert cli_app.main(["report", "--db", str(db), "--list", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["status"], r["best"]) for r in runs] == [(2, "finished", "inductor"), (1, "interrupted", None)]


def test_report_renders_latest_run(db, capsys):
    assert cli_app.main(["report", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "hone run 2" in out and "best: inductor" in out


def test_report_named_run_and_partial_note(db, capsys, monkeypatch):
    monkeypatch.setenv("HONE_DB", str(db))  # --db from the environment
    assert cli_app.main(["report", "1"]) == 0
    out = capsys.readouterr().out
    assert "hone run 1" in out and "run 1 is interrupted" in out


def test_unknown_run(db, capsys):
    assert cli_app.main(["report", "--db", str(db), "9"]) == 2
    err = capsys.readouterr().err
    assert "no run 9" in err and "stored runs: 1, 2" in err


def test_missing_store(tmp_path, capsys):
    path = tmp_path / "nope" / "hone.db"
    assert cli_app.main(["report", "--db", str(path)]) == 2
    assert f"no run store at {path}; run `hone optimize` first" in capsys.readouterr().err
    assert not path.parent.exists()  # reporting never creates a store
