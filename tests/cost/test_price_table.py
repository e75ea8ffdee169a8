"""The price table: the shipped one loads; every problem in a user's table is one InputError
naming the file and the row; the closest match to a machine; --instance / --price-per-hour."""

import json

import pytest

from hone.cost.pricing import Price, Pricing, pricing_from_options
from hone.cost.table import DEFAULT_TABLE, closest, load_table
from hone.errors import InputError

ROW = {"name": "box.large", "usd_per_hour": 0.1, "vcpus": 2, "cpu_vendor": "amd", "as_of": "2025-05-01",
       "source": "https://example.com/prices"}
ZEN = {"arch": "x86_64", "cpu_name": "AMD EPYC 9R14", "usable_cores": 2, "logical_cores": 2, "physical_cores": 2,
       "flags": ["avx2"]}


def _write(tmp_path, rows, **top):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"schema": "hone.prices/1", "instances": rows, **top}))
    return path


def test_the_shipped_table_is_dated_and_sourced_and_has_every_projection_target():
    table = load_table()
    names = {r.name for r in table.instances}
    assert {"c7a.large", "c6a.large", "c7i.large", "c7i.xlarge", "c7g.xlarge", "g4dn.xlarge", "g6.xlarge",
            "a2-highgpu-1g", "p5.48xlarge"} <= names
    assert all(r.as_of and r.source.startswith("https://") for r in table.instances)
    assert "check" in table.note


@pytest.mark.parametrize("change, words", [
    ({"usd_per_hour": None}, "'usd_per_hour' is missing"),
    ({"usd_per_hour": "cheap"}, "'usd_per_hour' must be a number"),
    ({"usd_per_hour": -1}, "finite number >= 0"),
    ({"vcpus": 0}, "'vcpus' must be >= 1"),
    ({"cpu_vendor": "ibm"}, "'cpu_vendor' must be one of"),
    ({"as_of": "May 2025"}, "'as_of' must be a date"),
    ({"gpu": "NVIDIA T4"}, "needs 'gpu_count'"),
])  # fmt: skip
def test_a_bad_row_names_the_file_and_the_row(tmp_path, change, words):
    bad = {**ROW, "name": "bad.xlarge", **change}
    bad = {k: v for k, v in bad.items() if v is not None}
    path = _write(tmp_path, [ROW, bad])
    with pytest.raises(InputError) as caught:
        load_table(path)
    assert str(path) in str(caught.value) and "row 2 (bad.xlarge)" in str(caught.value) and words in str(caught.value)


def test_the_table_itself_must_be_there_parse_and_hold_distinct_rows(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_table(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        load_table(tmp_path / "broken.json")
    with pytest.raises(InputError, match="appears twice"):
        load_table(_write(tmp_path, [ROW, ROW]))
    with pytest.raises(InputError, match="schema"):
        load_table(_write(tmp_path, [ROW], schema="other/2"))


def test_this_machine_is_priced_as_the_closest_match_and_says_so():
    price = Pricing().resolve(ZEN)
    assert price.instance == "c7a.large" and price.assumed  # 2 Zen cores: not c6a.large's one core, two threads
    assert price.describe().startswith("priced as c7a.large ($0.1026/h; closest match: AMD x86, 2 vCPUs")
    assert price.describe().endswith("--instance or --price-per-hour to change")
    spr = {**ZEN, "cpu_name": "Intel(R) Xeon(R) Platinum 8488C", "physical_cores": 1, "flags": ["amx_tile"]}
    assert Pricing().resolve(spr).instance == "c7i.large"  # AMX: Sapphire Rapids, not the cheaper Ice Lake
    arm = {"arch": "aarch64", "cpu_name": "", "usable_cores": 4, "physical_cores": 4, "flags": ["sve"]}
    assert Pricing().resolve(arm).instance == "c7g.xlarge"
    assert closest(load_table(), {**ZEN, "arch": "riscv64"}) is not None  # not arm: the x86 rows, vendor unknown


def test_instance_and_price_per_hour_are_the_users_word():
    assert Pricing(instance="c6a.large").resolve(ZEN) == Price(0.0765, "c6a.large", "--instance", "2025-05-01",
                                                              "https://aws.amazon.com/ec2/pricing/on-demand/")
    own = Pricing(usd_per_hour=0.25).resolve(ZEN)
    assert own.usd_per_hour == 0.25 and not own.assumed and own.describe() == "priced at $0.25/h (--price-per-hour)"
    assert pricing_from_options(None, None, None) is None


def test_bad_pricing_fails_when_made(tmp_path):
    with pytest.raises(InputError, match="no instance 'c9z.huge'") as caught:
        Pricing(instance="c9z.huge")
    assert "c7a.large" in str(caught.value)  # the hint lists what there is
    with pytest.raises(InputError, match="not both"):
        Pricing(usd_per_hour=1.0, instance="c7a.large")
    with pytest.raises(InputError, match=">= 0"):
        Pricing(usd_per_hour=-0.5)
    with pytest.raises(InputError, match="does not exist"):
        Pricing(table=str(tmp_path / "none.json"))
    own = _write(tmp_path, [ROW])
    assert Pricing(table=str(own), instance="box.large").resolve(ZEN).usd_per_hour == 0.1


def test_a_gpu_is_priced_per_gpu_by_its_model_name():
    hw = {**ZEN, "gpus": [{"name": "NVIDIA H100 80GB HBM3"}]}
    price = Pricing().resolve(hw, "cuda")
    assert price.instance == "p5.48xlarge" and price.usd_per_hour == pytest.approx(98.32 / 8)
    assert "per GPU" in price.basis
    a100 = Pricing().resolve({**ZEN, "gpus": [{"name": "NVIDIA A100-SXM4-40GB"}]}, "cuda:0")
    assert a100.instance == "a2-highgpu-1g"  # one GPU, cheaper per GPU than a p4d's eighth; not an 80GB H100
    with pytest.raises(InputError, match="has this GPU"):
        Pricing().resolve({**ZEN, "gpus": [{"name": "NVIDIA H200"}]}, "cuda")


def test_the_default_table_path_is_inside_the_package():
    assert DEFAULT_TABLE.name == "prices.json" and DEFAULT_TABLE.parent.name == "cost"
