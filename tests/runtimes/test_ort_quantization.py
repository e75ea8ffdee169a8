import dataclasses

import pytest
import torch

from hone.errors import InputError, Unsupported
from hone.passes.onnx.ort_quantize_dynamic import OrtQuantizeDynamic, OrtQuantizeDynamicConfig
from hone.passes.onnx.ort_quantize_static import OrtQuantizeStatic, OrtQuantizeStaticConfig
from hone.search.recipe import Recipe, Step
from hone.validate.compare import compare_output
from harness import build, this_cpu
from tiny_models import tiny_mlp

_BUILDS: dict = {}  # one export + quantization per config: keeps the file within seconds


def _recipe(cls, **fields) -> Recipe:
    """The recipe hone proposes on this CPU (7-bit weights where int8 dot products saturate),
    with `fields` of its quantization config changed."""
    base = cls.propose(None, this_cpu(), "cpu")[0]
    config = dataclasses.replace(base.passes[1].config, **fields)
    return dataclasses.replace(base, passes=(base.passes[0], Step(cls.name, config)))


def _calibration(outliers: bool) -> tuple[torch.Tensor]:
    torch.manual_seed(1)
    samples = torch.randn(64, 32)
    if outliers:  # a few huge values: minmax must cover them, percentile and entropy clip them
        samples[::16, :4] *= 40
    return (samples,)


def _static(outliers: bool = True, **fields):
    key = (outliers, tuple(sorted(fields.items())))
    if key not in _BUILDS:
        model, x = tiny_mlp()
        recipe = _recipe(OrtQuantizeStatic, **fields)
        _BUILDS[key] = build(recipe, model, x, calibration=_calibration(outliers))
    return _BUILDS[key]


def _cosine(runner, named, expected) -> float:
    (got,), (name, want) = runner(*named.values()), next(iter(expected.items()))
    return compare_output(name, got, want, "int8").cosine


def test_dynamic_int8_quantizes_and_keeps_the_answers():
    model, x = tiny_mlp()
    runner, artifact, named, expected = build(OrtQuantizeDynamic.propose(None, this_cpu(), "cpu")[0], model, x)
    assert artifact.compute_dtype == "int8"
    notes = artifact.notes["ort_quantize_dynamic"]  # each step's notes under its own name
    assert notes["quantized_nodes"] > 0  # MatMulInteger etc. really in the graph
    assert notes["quantization"]["weight_type"] == "qint8"
    assert set(artifact.notes) == {"onnx_export", "ort_quantize_dynamic"}
    assert runner.info()["providers"] == ["CPUExecutionProvider"]
    assert "quantized_nodes" not in runner.info()  # the runtime's info is its own
    assert runner.report()["steps"]["ort_quantize_dynamic"]["quantized_nodes"] == notes["quantized_nodes"]
    (got,) = runner(*named.values())
    assert not torch.equal(got, expected["output"])  # really quantized, not a float passthrough
    assert _cosine(runner, named, expected) > 0.99


def _notes(artifact) -> dict:
    return artifact.notes["ort_quantize_static"]


def test_static_int8_on_clean_calibration_keeps_the_answers():
    runner, artifact, named, expected = _static(outliers=False)
    assert _notes(artifact)["calibrate_method"] == "minmax"
    assert _notes(artifact)["calibration_samples_used"] == 64
    assert _notes(artifact)["quantized_nodes"] > 0
    assert _cosine(runner, named, expected) > 0.99


def test_each_calibration_method_is_selectable_and_changes_the_scales():
    scales = {}
    for method, fields in [("minmax", {}), ("percentile", {"percentile": 99.0}), ("entropy", {})]:
        runner, artifact, named, expected = _static(calibrate_method=method, **fields)
        assert _notes(artifact)["calibrate_method"] == method
        (got,) = runner(*named.values())
        assert torch.isfinite(got).all()
        scales[method] = _notes(artifact)["activation_scales"]
    assert all(scales.values()) and scales["minmax"].keys() == scales["percentile"].keys() == scales["entropy"].keys()
    first = next(iter(scales["minmax"]))  # the input's scale: where the outliers are
    assert scales["minmax"][first] > scales["percentile"][first]  # percentile clips the outliers
    assert scales["minmax"][first] != scales["entropy"][first]
    assert scales["percentile"][first] != scales["entropy"][first]


def test_calibration_samples_caps_whole_batches():
    _, artifact, _, _ = _static(outliers=False, calibration_samples=10)
    assert _notes(artifact)["calibration_samples_used"] == 8  # two batches of 4; a third would exceed 10


def test_per_channel_gives_one_weight_scale_per_output_channel():
    per_tensor = _notes(_static(outliers=False, per_channel=False)[1])["weight_scale_count"]
    per_channel = _notes(_static(outliers=False, per_channel=True)[1])["weight_scale_count"]
    assert per_tensor == 2  # fc1, fc2
    assert per_channel == 64 + 10


def test_configs_validate_and_round_trip():
    for config in (
        OrtQuantizeDynamicConfig(weight_type="quint8", per_channel=True, op_types=("MatMul",)),
        OrtQuantizeStaticConfig(calibrate_method="percentile", percentile=99.9, activation_type="qint8"),
    ):
        assert type(config).from_dict(config.to_dict()) == config
    assert OrtQuantizeDynamicConfig.from_dict({"op_types": ["Gemm"]}).op_types == ("Gemm",)
    for bad, match in [
        (lambda: OrtQuantizeDynamicConfig(weight_type="int4"), "weight_type"),
        (lambda: OrtQuantizeStaticConfig(calibrate_method="kl"), "calibrate_method"),
        (lambda: OrtQuantizeStaticConfig(percentile=90.0), "percentile"),
        (lambda: OrtQuantizeStaticConfig(percentile=100.5), "percentile"),
        (lambda: OrtQuantizeStaticConfig(calibration_samples=0), "calibration_samples"),
        (lambda: OrtQuantizeStaticConfig(quant_format="qoperator"), "quant_format"),
    ]:
        with pytest.raises(InputError, match=match):
            bad()


def test_quantizer_failure_is_unsupported_naming_the_op(monkeypatch):
    import onnxruntime.quantization

    def fail(*args, **kwargs):
        raise RuntimeError("no int8 kernel for Gemm node node_linear\nlong traceback text")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_static", fail)
    model, x = tiny_mlp()
    with pytest.raises(Unsupported) as info:
        build(_recipe(OrtQuantizeStatic), model, x)
    assert str(info.value) == "ORT static quantization failed on op Gemm: RuntimeError: no int8 kernel for Gemm node node_linear"


def test_proposed_on_cpu_only():
    for cls, label, cost in ((OrtQuantizeDynamic, "ort-int8-dynamic", 1.5), (OrtQuantizeStatic, "ort-int8-static", 2.0)):
        (recipe,) = cls.propose(None, this_cpu(), "cpu")
        assert recipe.label == label and recipe.compute_dtype == "int8" and recipe.cost == cost
        assert recipe.describe() == f"onnx_export -> {cls.name} -> onnxruntime"
        assert Recipe.from_dict(recipe.to_dict()) == recipe
        assert cls.propose(None, None, "cuda") == []


def test_declarations_and_the_configs_for_int8_that_saturates(hardware):
    saturating = dataclasses.replace(hardware, flags=hardware.flags - {"avx512_vnni", "avx_vnni"}, arch="x86_64")
    for cls in (OrtQuantizeDynamic, OrtQuantizeStatic):
        assert cls.consumes == ("onnx",) and cls.produces == "onnx" and cls.stage == "quantize"
        (variant,) = cls.variants(None, saturating, "cpu", "onnx")
        assert variant.config.reduce_range is True and variant.config.per_channel is True  # 7-bit weights
        assert variant.compute_dtype == "int8" and not variant.gives
        (plain,) = cls.variants(None, None, "cpu", "onnx")  # an unknown machine: full range
        assert plain.config.reduce_range is False
    assert OrtQuantizeStatic.variants(None, None, "cpu", "onnx")[0].addresses["compute"].unit == "int8"
    assert OrtQuantizeDynamic.variants(None, None, "cuda", "onnx") == []


def test_on_cuda_static_offers_the_symmetric_qdq_graph_tensorrt_takes():
    (variant,) = OrtQuantizeStatic.variants(None, None, "cuda", "onnx")
    config = variant.config
    assert variant.tag == "ort-int8-qdq" and variant.gives == frozenset({"int8-qdq-symmetric"})
    assert (config.activation_type, config.weight_type) == ("qint8", "qint8")
    assert config.activation_symmetric and config.weight_symmetric and config.per_channel


def test_quantized_graphs_stack_onto_the_lower_optimization_levels():
    from hone.search.compose import Composer

    labels = {s.recipe.label for s in Composer(None, this_cpu(), "cpu").stacked(OrtQuantizeStatic)}
    assert {"ort-int8-static+onnxruntime-extended", "ort-int8-static+onnxruntime-basic",
            "ort-int8-static+onnxruntime-disable"} <= labels


class _Block(torch.nn.Module):
    """Linear layers with biases on a 3-D input: on a static-shape graph ONNX Runtime's
    pre-processing fuses each MatMul and bias Add into a renamed Gemm."""

    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = torch.nn.Linear(16, 32), torch.nn.Linear(32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.nn.functional.gelu(self.up(x)))


@pytest.mark.parametrize("dynamic_batch", [False, True], ids=["static-batch", "dynamic-batch"])
def test_static_int8_quantizes_every_selected_layer_whatever_the_export(dynamic_batch):
    from hone.passes.onnx.layers import int8_weight_nodes

    torch.manual_seed(0)
    model, x = _Block().eval(), torch.randn(2, 8, 16)
    base = _recipe(OrtQuantizeStatic)
    export = Step(base.passes[0].name, dataclasses.replace(base.passes[0].config, dynamic_batch=dynamic_batch))
    recipe = dataclasses.replace(base, passes=(export, base.passes[1]))
    runner, artifact, named, expected = build(recipe, model, (x,), calibration=(torch.randn(16, 8, 16),))
    notes = artifact.notes["ort_quantize_static"]
    assert artifact.notes["onnx_export"]["dynamic_batch"] is dynamic_batch
    assert "selected_but_float" not in notes
    assert len(int8_weight_nodes(artifact.path)) == 2  # both Linear layers, fused or not
    assert _cosine(runner, named, expected) > 0.99
