"""`hone cost` on a real tiny stored run: optimize keeps the per-op record, prices the run, selects
by cost, and `hone cost` projects it and checks the projection against this machine."""

import importlib
import json

import pytest


@pytest.mark.slow
def test_hone_cost_on_a_real_run(tmp_path, monkeypatch, capsys):
    import hone
    from hone.cli import app as cli_app
    from hone.cost.pricing import Pricing
    from in_process_executor import InProcessExecutor
    db = tmp_path / "hone.db"
    result = hone.optimize("digits-cnn", batch_sizes=(1, 4), store=db, progress=False, measure_time_s=0.3,
                           include=["torchscript-trace"], objective="cost", pricing=Pricing(usd_per_hour=0.36),
                           time_budget_s=None, executor=InProcessExecutor())  # the cost, not the workers, is under test
    price = result.run.settings["constraints"]["price"]
    assert price["usd_per_hour"] == 0.36 and price["basis"] == "--price-per-hour"
    assert "objective cost: $" in result.selection.why_best and "/ 1M at bs" in result.selection.why_best
    sets = result.run.profile["sets"]
    assert [s["batch_size"] for s in sets] == [4, 1] and all(s["ops"] for s in sets)
    assert len(json.dumps(sets)) < 4000  # compact: a few op types x two sets

    monkeypatch.setattr(cli_app, "_register_commands", lambda: importlib.import_module("hone.cli.cost"))
    monkeypatch.delenv("HONE_DB", raising=False)
    assert cli_app.main(["cost", str(result.run.run_id), "--db", str(db), "--json", "--device-price", "300"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["price"]["usd_per_hour"] == 0.36
    machine = next(t for t in data["projection"]["targets"] if t["target"] == "this machine")
    assert machine["batch1"]["latency_s"] > 0 and machine["best"]["batch"] >= 1
    checks = data["projection"]["this_machine_check"]
    assert {c["input_set"] for c in checks} == {"bs1", "bs4"} and all(c["ratio"] > 0 for c in checks)
    eager = [c for c in checks if c["label"] == "eager"]
    # eager on this machine is slower than the lower bound from its own measured peaks
    assert all(c["ratio"] >= 1 for c in eager), eager
    assert data["break_even"]["text"]
