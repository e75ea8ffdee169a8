"""A stored run's cost report (`hone cost`): $ / 1M per candidate, the break-even, the projection
per target with this machine's measured/projected check; through the real CLI entry point."""

import importlib
import json

import pytest

from hone.cli import app as cli_app
from hone.cost.breakeven import OwnedDevice
from hone.cost.pricing import Price, Pricing
from hone.cost.run_cost import NO_RECORD, cost_report
from hone.errors import InputError
from hone.search.constraints import Constraints
from hone.search.run import OptimizeResult
from hone.store import Store
from results_factory import make_info, make_results

# One Linear(4096, 4) at batch 1 and 8 (test_projection's hand-computed figures), as optimize stores it.
SETS = [{"input_set": "bs1", "batch_size": 1, "wall_s": 0.01,
         "ops": [["aten::addmm", "float32", 1, 32768, 81952, 1e-5], ["aten::t", "float32", 1, 0, 0, 1e-6]]},
        {"input_set": "bs8", "batch_size": 8, "wall_s": 0.1,
         "ops": [["aten::addmm", "float32", 1, 262144, 196752, 1e-5], ["aten::t", "float32", 1, 0, 0, 1e-6]]}]
HARDWARE = {"cpu_name": "AMD EPYC 9R14", "arch": "x86_64", "usable_cores": 2, "physical_cores": 2,
            "memory_bytes": 2**34, "peaks": {"fp32_gflops": 1.0, "bandwidth_gbs": 10.0, "threads": 2}}
PRICE = Price(3.6, "toy.large", "--instance", "2025-05-01", "https://example.com")


def _result(profile=True, price=PRICE) -> OptimizeResult:
    info = make_info(hardware=HARDWARE, profile={"sets": SETS} if profile else None,
                     settings={"constraints": Constraints(price=price).to_dict()})
    return OptimizeResult.from_results(info, make_results())


def test_dollars_per_million_per_candidate_at_the_stored_price():
    report = cost_report(_result())
    inductor = {c.input_set: c for c in report.candidates if c.label == "inductor"}
    # $3.60/h: at 200/s (bs1) 3.6 / 720000 x 1e6 = $5.00 per 1M; at 160/s (bs8) $6.25
    assert inductor["bs1"].usd_per_million == pytest.approx(5.0) and inductor["bs1"].best_set and inductor["bs1"].winner
    assert inductor["bs8"].usd_per_million == pytest.approx(6.25) and not inductor["bs8"].best_set
    assert {c.label for c in report.candidates} == {"eager", "inductor", "ort-int8"}  # passing ones only


def test_the_projection_covers_every_target_and_checks_this_machine():
    report = cost_report(_result())
    names = [p.target.name for p in report.projections]
    assert names == ["h100", "a100", "l4", "t4", "xeon-amx", "graviton3", "this machine"]
    machine = report.projections[-1]
    assert machine.target.usd_per_hour == 3.6 and machine.target.measured
    # this machine at bs1: 32768 FLOPs at 1 GFLOP/s = 32.77 µs against 81952 B at 10 GB/s = 8.2 µs:
    # compute binds; plus 2 dispatches x 2 µs
    assert machine.batch1.latency_s == pytest.approx(32.768e-6 + 4e-6)
    checks = {(c.label, c.input_set): c for c in report.checks}
    assert set(checks) == {("eager", "bs1"), ("eager", "bs8"), ("inductor", "bs1"), ("inductor", "bs8")}
    assert checks["eager", "bs1"].ratio == pytest.approx(0.010 / (32.768e-6 + 4e-6))
    data = report.to_dict()
    assert data["projection"]["what"].startswith("projection: a lower bound") and data["priced_as"].startswith("priced as")
    json.dumps(data)  # plain data


def test_break_even_against_this_machines_price_and_against_a_projected_target():
    report = cost_report(_result(), device=OwnedDevice(500.0))
    # the winner (inductor) at its best rate here, 200/s; the same rate rented at $3.60/h: $5 / 1M;
    # 500 / 5e-6 = 1e8 inferences, 5e5 s = 5.79 days
    assert report.break_even.inferences == pytest.approx(1e8) and report.break_even.days == pytest.approx(5e5 / 86400)
    assert "toy.large" in report.against
    t4 = cost_report(_result(), device=OwnedDevice(500.0), against="t4")
    projected = next(p for p in t4.projections if p.target.name == "t4")
    assert t4.break_even.cloud_usd_per_million == projected.best.usd_per_million
    assert "lower bound" in t4.against
    with pytest.raises(InputError, match="no projected target 'tpu'"):
        cost_report(_result(), device=OwnedDevice(500.0), against="tpu")


def test_a_run_without_per_op_figures_is_priced_but_not_projected():
    report = cost_report(_result(profile=False))
    assert report.candidates and not report.projections and NO_RECORD in report.notes


def test_a_run_without_a_price_takes_the_closest_match_or_the_users():
    assumed = cost_report(_result(price=None))
    assert assumed.price.instance == "c7a.large" and assumed.price.assumed
    mine = cost_report(_result(), pricing=Pricing(usd_per_hour=0.72))
    assert next(c for c in mine.candidates if c.winner and c.best_set).usd_per_million == pytest.approx(1.0)


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.setattr(cli_app, "_register_commands", lambda: importlib.import_module("hone.cli.cost"))
    monkeypatch.delenv("HONE_DB", raising=False)
    path = tmp_path / "hone.db"
    with Store(path) as store:
        run_id = store.start_run(_result().run, "k")
        for r in make_results():
            store.record(run_id, r)
        store.finish_run(run_id)
    return path


def test_hone_cost_json_and_text(db, capsys):
    assert cli_app.main(["cost", "--db", str(db), "--json", "--device-price", "500", "--against", "l4"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["price"]["instance"] == "toy.large" and len(data["projection"]["targets"]) == 7
    assert data["break_even"]["inferences"] > 0 and "l4" in data["break_even"]["against"]
    assert cli_app.main(["cost", "--db", str(db), "--precision", "bf16", "--instance", "c7i.large"]) == 0
    out = capsys.readouterr().out
    assert "priced as c7i.large" in out and "Which hardware (projection: a lower bound" in out
    assert "bfloat16" in out and "measured / projected" in out


def test_hone_cost_bad_options_are_input_errors(db, capsys):
    assert cli_app.main(["cost", "--db", str(db), "--power-watts", "10"]) == 2
    assert "--device-price" in capsys.readouterr().err
    assert cli_app.main(["cost", "--db", str(db), "--precision", "fp8"]) == 2
    assert cli_app.main(["cost", "--db", str(db), "--instance", "nope.large"]) == 2


def test_hone_optimize_refuses_a_bad_price_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli_app, "_register_commands", lambda: importlib.import_module("hone.cli.optimize"))
    assert cli_app.main(["optimize", "digits-cnn", "--no-store", "--instance", "nope.large"]) == 2
    assert "no instance 'nope.large'" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"instances": [{"name": "x"}]}')
    assert cli_app.main(["optimize", "digits-cnn", "--no-store", "--price-table", str(tmp_path / "bad.json")]) == 2
    assert "row 1 (x): 'usd_per_hour' is missing" in capsys.readouterr().err
