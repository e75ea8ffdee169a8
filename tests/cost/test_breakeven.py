"""Cloud against edge: the break-even of a device you own, computed by hand, and "never"."""

import pytest

from hone.cost.breakeven import OwnedDevice, break_even
from hone.errors import InputError


def test_break_even_without_electricity():
    # $500 device at 100/s against $1 / 1M: each inference saves $1e-6, so 5e8 inferences;
    # 5e8 / 100 /s = 5e6 s = 57.87 days of continuous use.
    found = break_even(OwnedDevice(500.0), 100.0, 1.0)
    assert found.inferences == pytest.approx(5e8)
    assert found.days == pytest.approx(5e6 / 86400)
    assert found.text.startswith("breaks even after 500M inferences: 57.9 days of continuous use at 100/s")
    assert "electricity not counted" in found.text and found.within_lifetime is None


def test_break_even_with_electricity_and_a_lifetime():
    # 10 W at 100/s: 0.1 J per inference = 2.78e-8 kWh, at $0.30: $8.33e-9 each, $0.008333 / 1M
    device = OwnedDevice(500.0, power_watts=10.0, kwh_usd=0.30, lifetime_years=1.0)
    found = break_even(device, 100.0, 1.0)
    assert found.energy_usd_per_million == pytest.approx(0.1 / 3.6e6 * 0.30 * 1e6)
    saved = (1.0 - found.energy_usd_per_million) / 1e6
    assert found.inferences == pytest.approx(500.0 / saved)
    assert found.within_lifetime is True and "within its 1-year lifetime" in found.text
    # spread over a year of continuous use (3.156e9 inferences): $0.1584 / 1M, plus electricity
    assert found.lifetime_usd_per_million == pytest.approx(500 / (100 * 365.25 * 86400) * 1e6 + 0.1 / 3.6e6 * 0.3 * 1e6)


def test_a_lifetime_too_short_is_said():
    found = break_even(OwnedDevice(500.0, lifetime_years=0.1), 100.0, 1.0)  # needs 57.9 days, has 36.5
    assert found.within_lifetime is False
    assert found.text.startswith("does not break even within its 0.1-year lifetime even in continuous use")


def test_never_when_electricity_alone_costs_more_than_the_cloud():
    # $0.008333 / 1M of electricity against a cloud at $0.005 / 1M: nothing is ever saved
    found = break_even(OwnedDevice(500.0, power_watts=10.0, kwh_usd=0.30), 100.0, 0.005)
    assert found.inferences is None and found.days is None
    assert found.text == ("never breaks even: the device's electricity alone costs $0.00833 / 1M at 100/s, not less "
                          "than the cloud's $0.005 / 1M")
    assert break_even(OwnedDevice(500.0), 0.0, 1.0).inferences is None  # nothing measured


def test_a_free_device_breaks_even_at_once():
    assert break_even(OwnedDevice(0.0), 100.0, 1.0).inferences == 0.0


@pytest.mark.parametrize("kwargs, words", [
    (dict(purchase_usd=-1), "--device-price"),
    (dict(purchase_usd=100, power_watts=10), "go together"),
    (dict(purchase_usd=100, lifetime_years=0), "--lifetime-years"),
])  # fmt: skip
def test_bad_devices_are_input_errors(kwargs, words):
    with pytest.raises(InputError, match=words):
        OwnedDevice(**kwargs)
