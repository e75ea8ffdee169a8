"""--objective cost: ranks by $ / 1M at each candidate's best input set at this machine's price,
says the figure, is stored with the run and re-selected the same way; the $ / 1M column in the
console, HTML and JSON reports when the run has a price (and not without one)."""

import dataclasses

import pytest

from hone.bench.measurement import Measurement
from hone.config import NoConfig
from hone.cost.pricing import Price, Pricing
from hone.report.console import render_text
from hone.report.json import to_dict
from hone.report._html_table import candidate_table
from hone.search.constraints import Constraints
from hone.search.recipe import Recipe, Step
from hone.search.result import CandidateResult, Status
from hone.search.run import OptimizeResult
from hone.search.select import select
from hone.store import Store
from hone.validate.verdict import Verdict
from results_factory import make_info

C7A = Price(0.10264, "c7a.large", "closest match: AMD x86, 2 vCPUs", "2025-05-01", "https://aws.amazon.com/", True)


def _ok(label, input_set, p50_ms, batch):
    m = Measurement(times_s=(p50_ms / 1e3,) * 5, batch_size=batch, threads=2, timer="perf_counter")
    recipe = Recipe(label, (), Step(label, NoConfig()), baseline=label == "eager")
    return CandidateResult(recipe, input_set, Status.OK, "fine", verdict=Verdict(True, "fine", "float32"), measurement=m)


def _results():
    """fast: quickest by geometric mean (4 ms at bs1, 40 ms at bs8: 250/s at best); wide: slower at
    bs1 but 266.7/s at bs8, the most samples a second, so the cheapest per inference."""
    return [_ok("eager", "bs1", 10, 1), _ok("eager", "bs8", 80, 8), _ok("fast", "bs1", 4, 1),
            _ok("fast", "bs8", 40, 8), _ok("wide", "bs1", 7, 1), _ok("wide", "bs8", 30, 8)]


def test_cost_ranks_by_dollars_per_million_and_says_the_figure():
    assert select(_results()).best.label == "fast"
    sel = select(_results(), constraints=Constraints("cost", price=C7A))
    assert [r.recipe.label for r in sel.ranking] == ["wide", "fast", "eager"]
    # 0.10264 $/h / (8 / 0.030 s x 3600 s/h) x 1e6 = $0.1069 per 1M
    assert sel.why_best.endswith("; objective cost: $0.107 / 1M at bs8 priced as c7a.large")
    # one price for every candidate: the same order as throughput, whatever the price
    cheap = select(_results(), constraints=Constraints("cost", price=dataclasses.replace(C7A, usd_per_hour=9.0)))
    assert [r.recipe.label for r in cheap.ranking] == [r.recipe.label for r in sel.ranking]
    assert [r.recipe.label for r in select(_results(), constraints=Constraints("throughput")).ranking] == \
        [r.recipe.label for r in sel.ranking]


def test_a_stored_run_is_priced_and_reselected_as_it_was(tmp_path):
    constraints = Constraints("cost", price=C7A)
    info = make_info(settings={"timeout_s": 600, "constraints": constraints.to_dict()})
    with Store(tmp_path / "hone.db") as store:
        run_id = store.start_run(info, "k")
        for r in _results():
            store.record(run_id, r)
        store.finish_run(run_id)
        loaded = store.load_run(run_id, resolve=False)
    assert loaded.selection.constraints == constraints
    assert loaded.selection.best.label == "wide" and "priced as c7a.large" in loaded.selection.why_best


def test_the_api_prices_the_run_only_when_asked():
    from hone.api import _priced

    class Machine:
        def to_dict(self):
            return {"arch": "x86_64", "cpu_name": "AMD EPYC", "usable_cores": 2, "physical_cores": 2}

    assert _priced(Constraints(), None, Machine(), "cpu").price is None  # no price asked: no column
    closest = _priced(Constraints("cost"), None, Machine(), "cpu").price
    assert closest.instance == "c7a.large" and closest.assumed  # the cost objective takes the closest match
    given = _priced(Constraints(), Pricing(usd_per_hour=0.5), Machine(), "cpu").price
    assert given == Price(0.5, basis="--price-per-hour")


def _result(price):
    settings = {"constraints": Constraints("cost" if price else "latency", price=price).to_dict()}
    return OptimizeResult.from_results(make_info(settings=settings), _results())


def test_the_reports_show_dollars_per_million_when_the_run_has_a_price():
    priced = _result(C7A)
    text = render_text(priced)
    assert "$ / 1M" in text and "$0.107" in text  # wide at bs8
    assert "cost: priced as c7a.large ($0.1026/h; closest match: AMD x86, 2 vCPUs" in text
    assert "$ / 1M</th>" in candidate_table(priced) and "$0.107</td>" in candidate_table(priced)
    block = to_dict(priced)["cost"]
    assert block["price"]["instance"] == "c7a.large"
    wide = [c for c in block["candidates"] if c["label"] == "wide" and c["best_set"]]
    assert wide[0]["usd_per_million"] == pytest.approx(0.10264 / (8 / 0.030 * 3600) * 1e6)


def test_no_price_no_column():
    plain = _result(None)
    assert "$ / 1M" not in render_text(plain) and "$ / 1M" not in candidate_table(plain)
    assert "cost" not in to_dict(plain)
