"""The composer: chains from declarations, checked at plan time, labels and costs derived."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hone.errors import InputError
from hone.models.workload import InputSet, Workload
from hone.registry import PASSES, RUNTIMES
from hone.search.compose import Composer, mismatch
from tiny_models import TinyConv, TinyMLP


def _workload(module, **inputs):
    return Workload("t", module, [InputSet("bs2", inputs)])


def _image(hardware):
    return Composer(_workload(TinyConv(), pixels=torch.randn(2, 3, 8, 8)), hardware, "cpu")


def _vector(hardware):
    return Composer(_workload(TinyMLP(), x=torch.randn(2, 32)), hardware, "cpu")


def _labels(composer):
    return {s.recipe.label: s for s in composer.default_stacks()}


def _variant(composer, name, tag, fmt="torch"):
    cls = PASSES.get(name) if name in PASSES.names() else RUNTIMES.get(name)
    return next(v for v in composer.variants(cls, fmt) if v.tag == tag)


def test_a_stack_is_its_steps_with_label_cost_and_dtype_derived(hardware):
    composer = _image(hardware)
    stack = composer.parse("pt2e-int8+aoti")
    recipe = stack.recipe
    assert [s.name for s in recipe.passes] == ["pt2e_int8"] and recipe.runtime.name == "aoti"
    assert recipe.label == "pt2e-int8+aoti" and recipe.compute_dtype == "int8" and not recipe.baseline
    pt2e, aoti = _variant(composer, "pt2e_int8", "pt2e-int8"), _variant(composer, "aoti", "aoti", "torch-quantized")
    assert recipe.cost == pytest.approx(pt2e.cost + aoti.cost)
    assert pt2e.origin in recipe.origin and aoti.origin in recipe.origin
    # The default runtime of what a pass produces is implied, and converters are filled in.
    assert composer.parse("pt2e-int8").recipe.runtime.name == "inductor"
    ort = composer.parse("ort-int8-static").recipe
    assert [s.name for s in ort.passes] == ["onnx_export", "ort_quantize_static"] and ort.runtime.name == "onnxruntime"
    assert ort.label == "ort-int8-static"
    assert composer.parse("channels-last+inductor").recipe.label == "channels-last+inductor"


@pytest.mark.parametrize(("stack", "says"), [
    ("pt2e-int8+onnxruntime", "onnxruntime takes onnx, and nothing converts torch-quantized"),
    ("bf16+onnxruntime", "takes float32 models, but bf16 computes in bfloat16"),
    ("channels-last+onnxruntime", "drops channels_last, so channels-last would do nothing"),
    ("bf16+channels-last", "channels-last (layout) cannot follow bf16 (precision)"),
    ("pt2e-int8+torch-int8-dynamic", "torch-int8-dynamic takes torch"),
    ("inductor+bf16", "inductor is a runtime: it must come last"),
    ("frobnicate+inductor", "no step named 'frobnicate'"),
])
def test_an_impossible_stack_is_refused_at_plan_time_in_one_line(hardware, stack, says):
    with pytest.raises(InputError, match=None) as caught:
        _image(hardware).parse(stack)
    message = str(caught.value.message)
    assert says in message and "\n" not in message, message


def test_mismatch_checks_formats_stages_dtypes_and_traits(hardware):
    composer = _image(hardware)
    stack = composer.parse("channels-last+pt2e-int8+aoti")  # three steps compose on request
    assert mismatch(list(stack.links)) is None
    reordered = [stack.links[1], stack.links[0], stack.links[2]]
    assert "channels-last takes torch, but pt2e-int8 gives torch-quantized" in mismatch(reordered)


def test_the_default_plan_holds_the_new_stacks_where_the_machine_and_model_allow(hardware):
    image = _labels(_image(hardware))
    for label in ("channels-last+inductor", "channels-last+aoti", "bf16+inductor", "bf16+aoti", "pt2e-int8+aoti",
                  "torchao-int8-weight-only", "torchao-int8-weight-only+aoti", "ort-int8-static+onnxruntime-basic",
                  "ort-int8-static+onnxruntime-extended", "ort-int8-static+onnxruntime-disable"):
        assert label in image, (label, sorted(image))
    # Without a 4-D float input the layout pass offers nothing, so none of its stacks exist.
    vector = _labels(_vector(hardware))
    assert not [label for label in vector if "channels-last" in label]
    with pytest.raises(InputError, match="no step named 'channels-last'"):
        _vector(hardware).parse("channels-last+inductor")
    # Runtime variants that only make sense under a quantizer are not planned alone.
    assert "onnxruntime-basic" not in vector and "onnxruntime" in vector
    # Every label is unique and one recipe is the baseline: eager fp32, first.
    stacks = _image(hardware).default_stacks()
    assert stacks[0].recipe.baseline and stacks[0].recipe.label == "eager"
    assert sum(s.recipe.baseline for s in stacks) == 1
    assert len({s.recipe.label for s in stacks}) == len(stacks)


# Every recipe hand-written in a plugin before the composer existed (on a CPU, for an image
# model), under its derived label: eager-bf16 is now "bf16".
EXISTING = {
    "eager": ((), "eager"), "aoti": ((), "aoti"), "inductor": ((), "inductor"),
    "inductor-dynamic": ((), "inductor"), "inductor-max-autotune": ((), "inductor"), "ipex": ((), "ipex"),
    "ipex-bf16": ((), "ipex"), "onnxruntime": (("onnx_export",), "onnxruntime"),
    "openvino": (("openvino_convert",), "openvino"), "openvino-throughput": (("openvino_convert",), "openvino"),
    "openvino-bf16": (("openvino_convert",), "openvino"), "torchscript-trace": ((), "torchscript"),
    "torchscript-script": ((), "torchscript"), "tvm": ((), "tvm"), "tvm-tuned": ((), "tvm"),
    "ort-int8-dynamic": (("onnx_export", "ort_quantize_dynamic"), "onnxruntime"),
    "ort-int8-static": (("onnx_export", "ort_quantize_static"), "onnxruntime"),
    "openvino-int8": (("openvino_convert", "nncf_quantize"), "openvino"),
    "openvino-int8-weights": (("openvino_convert", "nncf_compress_weights"), "openvino"),
    "openvino-int4-weights": (("openvino_convert", "nncf_compress_weights"), "openvino"),
    "bf16": (("bf16_autocast",), "eager"), "channels-last": (("channels_last",), "eager"),
    "torch-int8-dynamic": (("dynamic_int8",), "eager"), "fp8": (("fp8",), "inductor"),
    "pt2e-int8": (("pt2e_int8",), "inductor"), "torchao-int8-weight-only": (("torchao_weight_only",), "inductor"),
    "torchao-int4-weight-only": (("torchao_weight_only",), "inductor"),
}


def test_every_recipe_that_existed_is_still_planned_with_the_same_steps(hardware):
    planned = _labels(_image(hardware))
    for label, (passes, runtime) in EXISTING.items():
        assert label in planned, label
        recipe = planned[label].recipe
        assert (tuple(s.name for s in recipe.passes), recipe.runtime.name) == (passes, runtime), label


def test_runtime_configs_follow_what_they_are_handed(hardware):
    cuda = Composer(None, dataclasses.replace(hardware), "cuda")
    for_float = cuda.variants(RUNTIMES.get("inductor"), "torch")[0].config
    for_quantized = cuda.variants(RUNTIMES.get("inductor"), "torch-quantized")[0].config
    assert for_float.freezing and not for_quantized.freezing  # tensor-subclass weights need nothing folded


@pytest.fixture
def toy_pass():
    from plugin_toy_pass import ToyRewrite

    PASSES.register(ToyRewrite)
    yield ToyRewrite
    PASSES.unregister(ToyRewrite.name)


def test_a_new_pass_in_one_file_composes_with_every_runtime_that_takes_its_output(hardware, toy_pass):
    composer = _vector(hardware)
    planned = _labels(composer)
    assert planned["toy"].recipe.runtime.name == "eager"  # its format's default runtime
    for cls in RUNTIMES:
        if "torch" not in cls.consumes:
            continue
        for variant in composer.variants(cls, "torch"):
            if variant.stack and variant.tag != "eager":
                assert f"toy+{variant.tag}" in planned, (variant.tag, sorted(planned))
    # Through a converter too, on request: the toy pass keeps nothing a converter drops.
    onnx = composer.parse("toy+onnxruntime").recipe
    assert [s.name for s in onnx.passes] == ["test_toy_rewrite", "onnx_export"]
    assert planned["toy+inductor"].recipe.cost == pytest.approx(0.25 + composer.parse("inductor").recipe.cost)


def test_the_toy_pass_builds_and_files_its_notes_under_its_name(hardware, toy_pass, tmp_path):
    from hone.plugin import BuildContext
    from hone.search.build import build_recipe

    model = TinyMLP().eval()
    x = torch.randn(2, 32)
    recipe = _vector(hardware).parse("toy").recipe
    ctx = BuildContext((x,), ["x"], ["output"], tmp_path, 1)
    runner, artifact, _ = build_recipe(recipe, model, ctx)
    torch.testing.assert_close(runner(x)[0], model(x), rtol=0, atol=0)
    assert artifact.notes["test_toy_rewrite"]["outputs"] == "doubled then halved"
    assert "seconds" in runner.report()["steps"]["test_toy_rewrite"] and runner.built_for == ((2, 32),)
