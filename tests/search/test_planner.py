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


ZEN3_FLAGS = frozenset("fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c".split())  # no avx512, vnni, bf16
# What may be refused on a CPU, and why it cannot run at all (docs/ARCHITECTURE.md, "Capability
# gates"): fp8 needs an sm89+ GPU, IPEX refuses any torch but its own release.
CPU_GATES = {"fp8", "ipex", "ipex-bf16"}


def _config(planned, label, step):
    return next(s.config for s in (*planned[label].recipe.passes, planned[label].recipe.runtime) if s.name == step)


def test_gates_refuse_only_what_cannot_run_on_an_avx2_only_cpu(hardware):
    zen3 = dataclasses.replace(hardware, flags=ZEN3_FLAGS, arch="x86_64")
    planned = {p.recipe.label: p for p in plan(_workload(TinyMLP(), x=torch.randn(2, 32)), zen3)}
    # bf16 is emulated and int8 runs on AVX2 kernels there: slower perhaps, but they run, so they are measured.
    for label in ("eager-bf16", "pt2e-int8", "ort-int8-static", "ort-int8-dynamic", "openvino-int8", "openvino-bf16"):
        assert label in planned and planned[label].unavailable is None, (label, planned.get(label))
    refused = {label for label, p in planned.items() if p.unavailable and "not installed" not in p.unavailable}
    assert refused <= CPU_GATES, {label: planned[label].unavailable for label in refused - CPU_GATES}
    # Without VNNI every int8 recipe asks its backend for 7 bits, and says so in its config and origin.
    assert _config(planned, "pt2e-int8", "pt2e_int8").weight_bits == 7
    assert _config(planned, "ort-int8-static", "ort_quantize_static").reduce_range is True
    assert _config(planned, "ort-int8-dynamic", "ort_quantize_dynamic").reduce_range is True
    assert _config(planned, "ort-int8-dynamic", "ort_quantize_dynamic").per_channel is True
    assert _config(planned, "openvino-int8", "nncf_quantize").overflow_fix == "enable"
    assert "7-bit" in planned["pt2e-int8"].recipe.origin


def test_int8_recipes_keep_full_range_with_vnni_and_follow_the_real_probe(hardware):
    vnni = dataclasses.replace(hardware, flags=ZEN3_FLAGS | {"avx512f", "avx512_vnni"}, arch="x86_64")
    w = _workload(TinyMLP(), x=torch.randn(2, 32))
    with_vnni = {p.recipe.label: p for p in plan(w, vnni)}
    assert _config(with_vnni, "pt2e-int8", "pt2e_int8").weight_bits == 8
    assert _config(with_vnni, "openvino-int8", "nncf_quantize").overflow_fix == "first_layer"
    here = {p.recipe.label: p for p in plan(w, hardware)}  # this CPU, as probed
    assert _config(here, "ort-int8-static", "ort_quantize_static").reduce_range is hardware.int8_dot_saturates
    assert here["pt2e-int8"].unavailable is None


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
