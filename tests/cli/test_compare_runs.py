"""`hone compare RUN_A RUN_B`: two real stored runs side by side, from one store or two; a copy
of a store edited as if its run came from another machine with other libraries."""

from __future__ import annotations

import json
import shutil
import sqlite3
from importlib import metadata

import pytest
import torch

from hone.cli.app import main
from in_process_executor import InProcessExecutor
from tiny_models import TinyMLP


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two small real runs of one model in one store: eager alone, then eager and TorchScript."""
    import hone

    root = tmp_path_factory.mktemp("compare")
    torch.manual_seed(0)
    model, x = TinyMLP().eval(), torch.randn(4, 32)
    db = root / "runs" / "hone.db"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HONE_CACHE_DIR", str(root / "cache"))
        for recipes in ([], ["torchscript-trace"]):
            hone.optimize(model, x, store=db, progress=False, measure_time_s=0.3, recipes=recipes, profile_first=False,
                          executor=InProcessExecutor())  # what is compared is under test, not the workers
    return db


def _compare(capsys, *args) -> tuple[int, dict | str, str]:
    rc = main(["compare", *map(str, args)])
    out = capsys.readouterr()
    return rc, json.loads(out.out) if "--json" in args and rc == 0 else out.out, out.err


def _labels(rows) -> set[str]:
    return {r["label"] for r in rows}


def test_two_runs_of_one_store_side_by_side(store, capsys):
    rc, found, err = _compare(capsys, 1, 2, "--db", store, "--json")
    assert rc == 0, err
    assert (found["a"]["run_id"], found["b"]["run_id"]) == (1, 2)
    eager = next(r for r in found["recipes"] if r["label"] == "eager")
    assert eager["input_set"] == "bs4" and eager["a"]["status"] == eager["b"]["status"] == "ok"
    assert eager["p50_ratio_b_over_a"] == pytest.approx(eager["b"]["p50_s"] / eager["a"]["p50_s"])
    assert eager["a"]["speedup"] == pytest.approx(1.0) and not eager["config_differs"]
    assert _labels(found["recipes"]) == {"eager"} and found["only_in_a"] == []
    assert found["only_in_b"] == [{"label": "torchscript-trace", "input_set": "bs4", "status": "ok"}]
    assert found["hardware"]["same_fingerprint"] is True and found["hardware"]["facts"] == {}
    assert found["versions"] == {} and found["status_changes"] == []
    rc, text, _ = _compare(capsys, 1, 2, "--db", store)
    assert rc == 0 and "only in B: torchscript-trace at bs4 (ok)" in text and "same machine and library versions" in text


def _as_if_elsewhere(source, target) -> None:
    """Run 2 of a copy of the store, as another machine with another torch would have stored
    it, where eager gave a wrong answer."""
    shutil.copyfile(source, target)
    with sqlite3.connect(target) as db:
        info = json.loads(db.execute("SELECT info_json FROM runs WHERE id = 2").fetchone()[0])
        info["fingerprint"] = "0123456789abcdef"
        info["hardware"].update(cpu_name="Other CPU", physical_cores=64, fingerprint="0123456789abcdef",
                                flags=[f for f in info["hardware"]["flags"] if f != "avx2"] + ["made_up_flag"])
        info["versions"]["torch"] = "0.0.1"
        db.execute("UPDATE runs SET info_json = ?, fingerprint = ? WHERE id = 2", (json.dumps(info), info["fingerprint"]))
        rowid, result = db.execute("SELECT rowid, result_json FROM candidates WHERE run_id = 2 AND label = 'eager'").fetchone()
        result = json.loads(result)
        result.update(status="wrong_answer", reason="output output: max abs err 1 exceeds tol")
        db.execute("UPDATE candidates SET result_json = ?, status = 'wrong_answer' WHERE rowid = ?", (json.dumps(result), rowid))


def test_runs_of_two_stores_say_what_differs(store, tmp_path, capsys, hardware):
    other = tmp_path / "other.db"
    _as_if_elsewhere(store, other)
    rc, found, err = _compare(capsys, 1, 2, "--db", store, "--db-b", other, "--json")
    assert rc == 0, err
    hw = found["hardware"]
    assert hw["same_fingerprint"] is False and hw["fingerprint"][1] == "0123456789abcdef"
    assert hw["facts"]["cpu_name"][1] == "Other CPU" and hw["facts"]["physical_cores"][1] == 64
    assert hw["flags_only_in_b"] == ["made_up_flag"]
    assert hw["flags_only_in_a"] == (["avx2"] if hardware.has_avx2 else [])
    assert found["versions"] == {"torch": [metadata.version("torch"), "0.0.1"]}
    assert found["status_changes"] == ["eager at bs4: ok -> wrong_answer"]
    eager = next(r for r in found["recipes"] if r["label"] == "eager")
    assert eager["b"]["p50_s"] is None and eager["p50_ratio_b_over_a"] is None  # a wrong answer has no timing
    rc, text, _ = _compare(capsys, 1, 2, "--db", store, "--db-b", other)
    assert rc == 0
    assert "status changed: eager at bs4: ok -> wrong_answer" in text
    assert "machines differ: fingerprint" in text and "cpu_name:" in text and "version torch:" in text


def test_a_run_that_is_not_there_is_bad_input(store, tmp_path, capsys):
    rc, _, err = _compare(capsys, 1, 99, "--db", store)
    assert rc == 2 and "no run 99 in" in err
    rc, _, err = _compare(capsys, 1, 2, "--db", tmp_path / "absent.db")
    assert rc == 2 and "no run store at" in err
