"""$ / 1M inferences from a throughput and a price per hour, figures computed by hand."""

import math

import pytest

from hone.cost.arithmetic import best_rate, cost_note, fmt_usd, usd_per_million
from hone.cost.pricing import Price
from results_factory import make_results


def test_dollars_per_million_by_hand():
    # $3.60/h = $0.001/s; at 1000 samples/s a sample costs $1e-6: $1.00 per million
    assert usd_per_million(1000.0, 3.60) == pytest.approx(1.0)
    # c7a.large at $0.10264/h, 250 samples/s: 0.10264 / 900000 x 1e6 = $0.114044
    assert usd_per_million(250.0, 0.10264) == pytest.approx(0.10264 / 900_000 * 1e6)
    assert usd_per_million(250.0, 0.0) == 0.0  # an owned device: nothing per hour


def test_nothing_measured_costs_infinity_and_a_bad_price_is_refused():
    assert math.isinf(usd_per_million(0.0, 1.0)) and math.isinf(usd_per_million(float("nan"), 1.0))
    with pytest.raises(ValueError):
        usd_per_million(10.0, -1.0)


def test_the_best_rate_is_the_set_with_the_most_samples_a_second():
    per_set = {r.input_set: r for r in make_results() if r.recipe.label == "eager"}
    # eager: bs1 10 ms (100/s), bs8 100 ms (80/s)
    assert best_rate(per_set) == ("bs1", pytest.approx(100.0))


def test_cost_note_names_the_set_and_what_it_is_priced_as():
    per_set = {r.input_set: r for r in make_results() if r.recipe.label == "inductor"}
    # inductor: bs1 5 ms (200/s), bs8 50 ms (160/s); at $0.72/h: 0.72 / (200 x 3600) x 1e6 = $1.00
    note = cost_note(per_set, Price(0.72, "c7a.large", "--instance"))
    assert note == "$1 / 1M at bs1 priced as c7a.large"
    assert "ranked by throughput" in cost_note(per_set, None)


def test_usd_format():
    assert [fmt_usd(x) for x in (0.4231, 12.34, 123.4, 1234.5, 0.0, None, math.inf, 0.00012)] == [
        "$0.423", "$12.3", "$123", "$1,234", "$0", "-", "-", "$1.20e-04"]
