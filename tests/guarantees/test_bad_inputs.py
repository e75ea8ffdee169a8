"""Guarantee: inputs that cannot be right are one typed error (InputError) before any worker
starts, with nothing written to the store: NaN in the example inputs, an eval set whose labels
do not match its samples, calibration of another rank or dtype, a batch outside a program's
declared range. (Wrong shapes and dtypes through the CLI: tests/cli/test_bad_input.py.)"""

from __future__ import annotations

import pytest
import torch

import hone
from hone.models.workload import EvalSet
from hone.errors import InputError
from plugins_for_tests import BUILD_LOG, CountingRuntime
from tiny_models import tiny_mlp


def _refused(tmp_path, monkeypatch, match: str, model=None, x=None, **kw) -> None:
    monkeypatch.setenv(BUILD_LOG, str(tmp_path / "builds.log"))
    if model is None:
        model, x = tiny_mlp()
    with pytest.raises(InputError, match=match):
        hone.optimize(model, x, recipes=[CountingRuntime.recipe()], store=tmp_path / "runs.db", progress=False, **kw)
    assert not (tmp_path / "runs.db").exists()  # no run recorded
    assert not (tmp_path / "builds.log").exists()  # no worker built anything


def test_nan_in_the_example_inputs(tmp_path, monkeypatch):
    model, x = tiny_mlp()
    x[1, 3] = float("nan")
    _refused(tmp_path, monkeypatch, r"example input 'x' at bs4 has 1 NaN values", model, x)


def test_inf_in_the_example_inputs_is_an_input_not_an_error():
    from hone.models.workload import InputSet, Workload

    model, x = tiny_mlp()
    x[0, 0] = float("-inf")  # an additive attention mask's value: legitimate
    Workload(name="m", module=model, input_sets=[InputSet("bs4", {"x": x})]).check_data()


def test_an_eval_set_whose_labels_do_not_match_its_samples(tmp_path, monkeypatch):
    eval_set = EvalSet(samples={"x": torch.randn(10, 32)}, labels=torch.zeros(7, dtype=torch.int64), metric="top1")
    _refused(tmp_path, monkeypatch, "eval set has 10 samples but 7 labels", eval=eval_set)


@pytest.mark.parametrize("calibration, says", [
    ({"x": torch.randn(8, 32, 1)}, "has shape"),
    ({"x": torch.randn(8, 32, dtype=torch.float64)}, "is torch.float64"),
    ({"x": torch.full((8, 32), float("nan"))}, "NaN/Inf"),
], ids=["rank", "dtype", "nan"])
def test_calibration_of_another_rank_or_dtype_or_with_nan(tmp_path, monkeypatch, calibration, says):
    _refused(tmp_path, monkeypatch, says, calibration=calibration)
