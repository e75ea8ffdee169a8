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
    assert conv[0].recipe.baseline and sum(p.recipe.baseline for p in conv) == 1
    for label in ("inductor", "onnxruntime", "bf16", "bf16+inductor"):
        assert label in _labels(mlp)


ZEN3_FLAGS = frozenset("fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c".split())  # no avx512, vnni, bf16
# The steps that may be refused on a CPU, and why they cannot run at all (docs/ARCHITECTURE.md,
# "Capability gates"): fp8 needs an sm89+ GPU, IPEX refuses any torch but its own release.
CPU_GATES = {"fp8", "ipex"}


def _config(planned, label, step):
    return next(s.config for s in (*planned[label].recipe.passes, planned[label].recipe.runtime) if s.name == step)


def test_gates_refuse_only_what_cannot_run_on_an_avx2_only_cpu(hardware):
    zen3 = dataclasses.replace(hardware, flags=ZEN3_FLAGS, arch="x86_64")
    planned = {p.recipe.label: p for p in plan(_workload(TinyMLP(), x=torch.randn(2, 32)), zen3)}
    # bf16 is emulated and int8 runs on AVX2 kernels there: slower perhaps, but they run, so they are measured.
    for label in ("bf16", "pt2e-int8", "ort-int8-static", "ort-int8-dynamic", "openvino-int8", "openvino-bf16"):
        assert label in planned and planned[label].unavailable is None, (label, planned.get(label))
    refused = {label: p.unavailable for label, p in planned.items() if p.unavailable and "not installed" not in p.unavailable}
    assert {why.split(":")[0] for why in refused.values()} <= CPU_GATES, refused
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
    by_name = plan(_workload(TinyMLP(), x=torch.randn(2, 32)), hardware, recipes=["bf16+inductor", "pt2e-int8+aoti"])
    assert _labels(by_name) == ["eager", "bf16+inductor", "pt2e-int8+aoti"]


def test_include_composes_a_stack_the_default_plan_lacks(hardware):
    w = _workload(TinyMLP(), x=torch.randn(2, 32))
    assert _labels(plan(w, hardware, include=["bf16+torchscript-trace"])) == ["eager", "bf16+torchscript-trace"]
    with pytest.raises(InputError, match="does not compose as a stack"):
        plan(w, hardware, include=["bf16+onnxruntime"])


def _finding(kind, share, units=None):
    from hone.profiler.records import Finding

    return Finding(kind, share, f"{kind}-bound: {share:.0%}", units or {})


def test_findings_order_the_plan_by_the_steps_claims_and_name_the_finding(hardware):
    w = _workload(TinyMLP(), x=torch.randn(2, 32))
    planned = plan(w, hardware, findings=[_finding("overhead", 0.9)])
    # The strongest overhead claim first (a C++ session), fusion before an untuned TVM; each says why.
    labels = _labels(planned)
    assert labels[:2] == ["eager", "onnxruntime"] and labels.index("inductor") < labels.index("tvm")
    assert planned[1].recipe.origin == "overhead-bound: 90% -> a C++ session runs the graph without Python dispatch per op"
    assert planned[1].recipe.key == next(p.recipe.key for p in plan(w, hardware) if p.recipe.label == "onnxruntime")
    # Stacks inherit their steps' claims: bf16 on Inductor comes with Inductor's fusion claim.
    memory = _labels(plan(w, hardware, findings=[_finding("memory", 0.8)]))
    assert memory.index("bf16+inductor") < memory.index("tvm")


def test_a_claim_on_a_unit_holds_only_where_the_unit_pays(hardware):
    w = _workload(TinyMLP(), x=torch.randn(2, 32))
    with_int8 = plan(w, hardware, findings=[_finding("compute", 0.9, {"int8": "int8 GEMMs measured faster"})])
    without = plan(w, hardware, findings=[_finding("compute", 0.9)])
    first = with_int8[1].recipe
    assert first.compute_dtype == "int8" and first.origin.endswith("int8 GEMMs measured faster")
    # Without the unit an int8 recipe's quantizer claims nothing: it does not come first.
    assert without[1].recipe.compute_dtype != "int8"


def test_where_overhead_dominates_lower_precision_is_left_out_unless_asked_for(hardware):
    w = _workload(TinyMLP(), x=torch.randn(2, 32))
    planned = plan(w, hardware, findings=[_finding("overhead", 0.8)])
    assert "bf16" not in _labels(planned) and "bf16+inductor" not in _labels(planned)
    assert planned.pruned["bf16"].startswith("overhead-bound (80% of wall time outside arithmetic): bf16")
    assert "bf16" in _labels(plan(w, hardware, findings=[_finding("overhead", 0.8)], include=["bf16"]))


def test_candidates_follow_gain_per_cost_spread_over_the_runtimes(hardware):
    w = _workload(TinyMLP(), x=torch.randn(2, 32))
    planned = [p.recipe for p in plan(w, hardware, findings=[_finding("overhead", 0.9)]) if not p.unavailable][1:]
    runtimes = [r.runtime.name for r in planned]
    # ONNX Runtime's session claims all of the overhead at the lowest cost: first. Its int8
    # variants claim as much for little more, but a second candidate on one runtime counts
    # half: Inductor (less gain per cost) is tried before them.
    assert runtimes[0] == "onnxruntime"
    assert runtimes.index("inductor") < runtimes.index("onnxruntime", 1)
