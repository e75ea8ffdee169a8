import dataclasses

import pytest
import torch

from hone.errors import InputError
from hone.models.workload import InputSet, Workload
from hone.search.planner import plan
from tiny_models import TinyConv, TinyMLP


def _workload(module, **inputs):
    return Workload("t", module, [InputSet("bs2", inputs)])


def _labels(planned):
    return [p.recipe.label for p in planned]


def test_baseline_first_and_channels_last_only_for_images(hardware):
    mlp = plan(_workload(TinyMLP(), x=torch.randn(2, 32)), hardware)
    conv = plan(_workload(TinyConv(), pixels=torch.randn(2, 3, 8, 8)), hardware)
    assert _labels(mlp)[0] == "eager" and _labels(conv)[0] == "eager"
    assert "channels-last" in _labels(conv) and "channels-last" not in _labels(mlp)
    for label in ("inductor", "onnxruntime", "eager-bf16"):
        assert label in _labels(mlp)


def test_bf16_is_planned_as_unsupported_without_bf16_units(hardware):
    no_bf16 = dataclasses.replace(hardware, flags=frozenset(f for f in hardware.flags if "bf16" not in f))
    planned = {p.recipe.label: p for p in plan(_workload(TinyMLP(), x=torch.randn(2, 32)), no_bf16)}
    assert "no bf16 units" in planned["eager-bf16"].unavailable
    assert planned["eager"].unavailable is None


def test_include_and_exclude_by_label(hardware):
    w = _workload(TinyMLP(), x=torch.randn(2, 32))
    assert _labels(plan(w, hardware, include=["inductor"])) == ["eager", "inductor"]
    assert "inductor" not in _labels(plan(w, hardware, exclude=["inductor"]))
    with pytest.raises(InputError, match="no recipe named 'nope'"):
        plan(w, hardware, include=["nope"])


def test_explicit_recipes_get_the_baseline_added(hardware):
    from plugins_for_tests import RaiseRuntime

    planned = plan(_workload(TinyMLP(), x=torch.randn(2, 32)), hardware, recipes=[RaiseRuntime.recipe()])
    assert _labels(planned) == ["eager", "test_raise"]


def _advice(*labels):
    from hone.profiler.records import Advice

    return [Advice(label, f"finding for {label}", "because", rank) for rank, label in enumerate(labels, 1)]


def test_advice_orders_the_plan_and_names_the_finding(hardware):
    w = _workload(TinyMLP(), x=torch.randn(2, 32))
    planned = plan(w, hardware, advice=_advice("onnxruntime", "inductor"))
    assert _labels(planned)[:3] == ["eager", "onnxruntime", "inductor"]
    assert planned[1].recipe.origin.startswith("finding for onnxruntime")
    assert planned[1].recipe.key == plan(w, hardware)[[*_labels(plan(w, hardware))].index("onnxruntime")].recipe.key


def test_prune_leaves_out_what_cannot_pay_unless_asked_for(hardware):
    w = _workload(TinyMLP(), x=torch.randn(2, 32))
    prune = {"eager-bf16": "overhead-bound"}
    assert "eager-bf16" not in _labels(plan(w, hardware, prune=prune))
    assert "eager-bf16" in _labels(plan(w, hardware, prune=prune, include=["eager-bf16"]))
