"""OpenVINO + NNCF quantization: real conversions, quantizations and CPU runs on tiny models.

What ran is checked where OpenVINO reports it: the stored weight constants of the IR and the
kernels of the compiled model's runtime graph (a weight-compressed layer keeps an f32 kernel;
an int8 one reports e.g. brgemm_avx512_i8)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hone._optional import is_available
from hone.errors import InputError, Unsupported
from hone.models.workload import FlatIO
from hone.passes.openvino.convert import layer_weight_precisions, read
from hone.passes.openvino.nncf_compress_weights import NncfCompressWeights, NncfCompressWeightsConfig
from hone.passes.openvino.nncf_quantize import NncfQuantize, NncfQuantizeConfig
from hone.passes.quantize import Scheme
from hone.plugin import Artifact, BuildContext
from hone.runtimes.openvino import OpenVinoConfig
from hone.search.recipe import Recipe, Step
from hone.validate.compare import compare_output
from harness import build, this_cpu
from skips import REQUIRES_BF16_CPU
from tiny_models import TinyConv, tiny_mlp

pytestmark = pytest.mark.skipif(
    not (is_available("openvino") and is_available("nncf")), reason="requires openvino and nncf (hone[openvino])"
)

_BUILDS: dict = {}  # one conversion + quantization per (recipe, model, calibration): keeps the file short


def _recipes() -> dict[str, Recipe]:
    recipes = NncfQuantize.propose(None, this_cpu(), "cpu") + NncfCompressWeights.propose(None, this_cpu(), "cpu")
    return {r.label: r for r in recipes}


def _proposed(label: str, **fields):
    """The quantization config hone proposes for `label` on this CPU, with `fields` changed."""
    return dataclasses.replace(_recipes()[label].passes[1].config, **fields)


def _with(label: str, config=None, runtime=None) -> Recipe:
    """A proposed recipe with its quantization pass's or runtime's config replaced."""
    base = _recipes()[label]
    passes = base.passes if config is None else (base.passes[0], Step(base.passes[1].name, config))
    return dataclasses.replace(base, passes=passes, runtime=runtime or base.runtime)


def _mlp():
    model, x = tiny_mlp()
    torch.manual_seed(1)
    return model, (x,), (torch.randn(32, 32),)


def _conv():
    torch.manual_seed(0)
    model = TinyConv().eval()
    return model, (torch.randn(2, 3, 8, 8),), (torch.randn(16, 3, 8, 8),)


def _bert():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        max_position_embeddings=32,
    )
    model = transformers.BertModel(config).eval()
    ids, mask = torch.randint(0, 100, (2, 8)), torch.ones(2, 8, dtype=torch.long)
    return model, (ids, mask), (torch.randint(0, 100, (16, 8)), torch.ones(16, 8, dtype=torch.long))


MODELS = {"mlp": _mlp, "conv": _conv, "bert": _bert}


def _build(label: str, model_name: str, config=None, runtime=None, scale: float = 1.0):
    key = (label, model_name, config, runtime, scale)
    if key not in _BUILDS:
        model, inputs, calibration = MODELS[model_name]()
        calibration = tuple(c * scale if c.is_floating_point() else c for c in calibration)
        _BUILDS[key] = build(_with(label, config, runtime), model, inputs, calibration=calibration)
    return _BUILDS[key]


def _cosines(runner, named, expected) -> list[float]:
    outputs = runner(*named.values())
    assert len(outputs) == len(expected)
    return [compare_output(name, got, want, "int8").cosine for (name, want), got in zip(expected.items(), outputs)]


def _kernels_of(runner, node_prefix: str) -> set[str]:
    """Kernels (primitiveType) of the runtime-graph nodes that executed ops of this scope."""
    kernels = set()
    for op in runner.compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if any(name.startswith(node_prefix) for name in info["originalLayersNames"].astype(str).split(",")):
            kernels.add(info["primitiveType"].astype(str))
    return kernels


def _weights(artifact) -> dict[str, str]:
    return layer_weight_precisions(read(artifact.path))


def _notes(artifact) -> dict:
    """The NNCF pass's own notes (each step files its notes under its name)."""
    (name,) = [n for n in artifact.notes if n.startswith("nncf_")]
    return artifact.notes[name]


CASES = [
    ("openvino-int8", "mlp"), ("openvino-int8", "conv"), ("openvino-int8-weights", "mlp"),
    ("openvino-int8-weights", "conv"), ("openvino-int4-weights", "mlp"),
    pytest.param("openvino-int8", "bert", marks=pytest.mark.slow),
    pytest.param("openvino-int8-weights", "bert", marks=pytest.mark.slow),
    pytest.param("openvino-int4-weights", "bert", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("label,model_name", CASES)
def test_recipe_builds_runs_and_stays_close_to_fp32(label, model_name):
    runner, artifact, named, expected = _build(label, model_name)
    assert artifact.format == "openvino" and artifact.compute_dtype == _recipes()[label].compute_dtype
    outputs = runner(*named.values())
    assert not torch.equal(outputs[0], next(iter(expected.values())))  # really quantized, not a float passthrough
    assert min(_cosines(runner, named, expected)) > 0.99
    info = runner.info()
    assert info["device"] == ["CPU"] and info["inference_num_threads"] == 1
    steps = runner.report()["steps"]  # the conversion's notes reach the runner's report, under its name
    assert steps["openvino_convert"]["openvino_static_shapes"] is True
    assert "openvino_static_shapes" not in info  # the runtime's info is its own
    assert set(steps) == {"openvino_convert", _recipes()[label].passes[1].name}


def test_proposals_name_what_they_do():
    recipes = _recipes()
    assert {label: r.compute_dtype for label, r in recipes.items()} == {
        "openvino-int8": "int8", "openvino-int8-weights": "int8", "openvino-int4-weights": "int4",
    }
    for recipe in recipes.values():
        assert recipe.origin and recipe.describe().startswith("openvino_convert -> nncf_")
        assert recipe.describe().endswith("-> openvino")
    assert {label: r.cost for label, r in recipes.items()} == {
        "openvino-int8": 2.5, "openvino-int8-weights": 2.0, "openvino-int4-weights": 2.0,
    }
    assert NncfQuantize.propose(None, None, "cuda") == []
    assert NncfCompressWeights.propose(None, None, "cuda") == []


def test_declarations():
    for cls in (NncfQuantize, NncfCompressWeights):
        assert (cls.consumes, cls.produces, cls.stage) == (("openvino",), "openvino", "quantize")
    (int8,) = NncfQuantize.variants(None, None, "cpu", "openvino")
    assert int8.config.overflow_fix == "first_layer" and int8.addresses["compute"].unit == "int8"
    saturating = dataclasses.replace(this_cpu(), flags=frozenset(), arch="x86_64")  # no VNNI
    assert NncfQuantize.variants(None, saturating, "cpu", "openvino")[0].config.overflow_fix == "enable"
    weights = {v.tag: v for v in NncfCompressWeights.variants(None, None, "cpu", "openvino")}
    assert set(weights) == {"openvino-int8-weights", "openvino-int4-weights"}
    assert "memory" in weights["openvino-int8-weights"].addresses


def test_int8_runs_int8_kernels_and_records_the_calibration():
    runner, artifact, _, _ = _build("openvino-int8", "conv")
    notes = _notes(artifact)
    assert notes["fake_quantize_nodes"] > 0 and notes["weight_precisions"] == {"i8": 2}
    assert notes["model_type"] == "default" and notes["calibration_samples_used"] == 16
    assert notes["calibration_s"] > 0
    info = runner.info()
    assert info["int8_compute_ops"] == 2  # the conv and the head, read back from the runtime graph
    assert all(kernel.lower().endswith("i8") for kernel in info["compute_ops"])


@pytest.mark.slow
def test_int8_on_attention_uses_transformer_mode_and_int8_kernels():
    runner, artifact, _, _ = _build("openvino-int8", "bert")
    assert _notes(artifact)["model_type"] == "transformer"  # auto: the graph has attention
    assert _notes(artifact)["weight_precisions"] == {"i8": 13}  # 12 encoder Linears + the pooler
    # The runtime graph runs at least those in int8 kernels; how many more (attention's matmuls,
    # fused ops) depends on the CPU's kernels (15 on an AVX2-only EPYC, 13 on Zen 4).
    assert runner.info()["int8_compute_ops"] >= 13


def test_weight_compression_keeps_float_kernels_with_int8_weights():
    runner, artifact, _, _ = _build("openvino-int8-weights", "mlp")
    assert _notes(artifact)["weight_precisions"] == {"u8": 2}  # int8_asym: unsigned with zero points
    assert _notes(artifact)["calibration_s"] == 0.0
    info = runner.info()
    assert info["int8_compute_ops"] == 0 and info["float_compute_ops"] == 2  # dequantized into f32 kernels
    assert all(key.startswith("FullyConnected/u8/") and key.endswith("f32") for key in info["compute_ops"])


def test_int4_compression_stores_int4_constants():
    runner, artifact, _, _ = _build("openvino-int4-weights", "mlp")
    # fc1 takes int4; NNCF keeps the last MatMul (fc2) in int8. 32 input features: the
    # default group of 128 does not divide them, so the ADJUST fallback uses 32.
    assert _weights(artifact) == {"fc1": "i4", "fc2": "u8"}
    assert _notes(artifact)["int4_group_sizes"] == [32]
    assert any(key.startswith("FullyConnected/i4/") for key in runner.info()["compute_ops"])


def test_int4_with_no_eligible_layer_is_unsupported_not_a_crash():
    # TinyConv: a convolution and a last Linear, both of which NNCF keeps in int8.
    with pytest.raises(Unsupported, match="no weight in int4"):
        _build("openvino-int4-weights", "conv")


def test_keep_float_layer_stays_float_in_the_ir_and_at_runtime():
    runner, artifact, named, expected = _build("openvino-int8", "conv", _proposed("openvino-int8", keep_float=("head",)))
    assert _weights(artifact) == {"conv": "i8", "head": "f32"}
    assert _notes(artifact)["kept_float"] == ["head"] and _notes(artifact)["ignored_nodes"] == 1
    head_kernels = _kernels_of(runner, "__module.module.head/")
    conv_kernels = _kernels_of(runner, "__module.module.conv/")
    assert head_kernels and all(k.lower().endswith("f32") for k in head_kernels if "gemm" in k)
    assert any(k.lower().endswith("i8") for k in conv_kernels)
    assert min(_cosines(runner, named, expected)) > 0.99


@pytest.mark.slow
def test_keep_float_maps_hf_module_names_for_both_passes():
    keep = ("encoder.layer.0.attention.self.query", "encoder.layer.1.output.dense")
    for label, config, quantized in [
        ("openvino-int8", _proposed("openvino-int8", keep_float=keep), "i8"),
        ("openvino-int4-weights", _proposed("openvino-int4-weights", keep_float=keep), "i4"),
    ]:
        runner, artifact, _, _ = _build(label, "bert", config)
        weights = _weights(artifact)
        assert [weights[name] for name in keep] == ["f32", "f32"]
        assert weights["encoder.layer.0.attention.self.key"] == quantized
        for name in keep:
            assert all("f32" in k for k in _kernels_of(runner, f"__module.module.{name}/") if "gemm" in k)


class _Svd(torch.nn.Module):
    """An op OpenVINO's PyTorch frontend has no conversion rule for."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svd(x)[1]


def test_unconvertible_model_is_unsupported_naming_the_op():
    with pytest.raises(Unsupported, match="No conversion rule found for operations: aten::linalg_svd"):
        build(_recipes()["openvino-int8-weights"], _Svd(), (torch.randn(2, 4, 4),))


@pytest.mark.parametrize("pass_name", ["nncf_quantize", "nncf_compress_weights"])
def test_wrong_keep_float_name_is_an_input_error_before_any_work(pass_name, tmp_path):
    from hone.registry import PASSES

    model, (x,), _ = _mlp()
    cls = PASSES.get(pass_name)
    step = cls(cls.Config(keep_float=("fc3",)))
    # The IR path does not exist: reading it would fail differently, so the check ran first.
    artifact = Artifact("openvino", module=FlatIO(model, ["x"], ["output"]), path=tmp_path / "missing.xml")
    ctx = BuildContext((x,), ["x"], ["output"], tmp_path, 1)
    with pytest.raises(InputError, match="fc3"):
        step.apply(artifact, ctx)


def test_calibration_changes_the_activation_ranges():
    _, plain, _, _ = _build("openvino-int8", "mlp")
    _, wide, _, _ = _build("openvino-int8", "mlp", scale=4.0)
    first = next(iter(_notes(plain)["activation_ranges"]))  # the input's FakeQuantize
    low, high = _notes(plain)["activation_ranges"][first]
    wide_low, wide_high = _notes(wide)["activation_ranges"][first]
    assert wide_high == pytest.approx(4 * high, rel=0.05) and wide_low == pytest.approx(4 * low, rel=0.05)


def test_inference_precision_is_pinned_to_f32_by_default():
    runner, _, _, _ = _build("openvino-int8-weights", "mlp")
    assert runner.info()["inference_precision"] == "f32"
    assert runner.info()["performance_hint"] == "LATENCY"


def test_bf16_inference_precision_when_configured():
    import openvino as ov

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip(REQUIRES_BF16_CPU)
    runtime = Step("openvino", OpenVinoConfig(inference_precision="bf16"))
    runner, _, named, expected = _build("openvino-int8-weights", "mlp", runtime=runtime)
    assert runner.info()["inference_precision"] == "bf16"
    assert min(_cosines(runner, named, expected)) > 0.99


def test_schemes_describe_what_nncf_does():
    assert NncfQuantize().scheme() == Scheme(activation_symmetric=True)
    assert NncfQuantize(NncfQuantizeConfig(preset="mixed")).scheme() == Scheme(activation_symmetric=False)
    assert NncfCompressWeights().scheme() == Scheme(weight_bits=8, weight_group=0, activations="none")
    int4 = NncfCompressWeights(NncfCompressWeightsConfig(mode="int4_sym", group_size=64)).scheme()
    assert (int4.weight_bits, int4.weight_group, int4.activations) == (4, 64, "none")
    per_channel = NncfCompressWeights(NncfCompressWeightsConfig(mode="int4_asym", group_size=-1)).scheme()
    assert per_channel.weight_group == 0


@pytest.mark.parametrize("make,fields", [
    (NncfQuantizeConfig, {"preset": "fast"}),
    (NncfQuantizeConfig, {"model_type": "cnn"}),
    (NncfQuantizeConfig, {"calibration_samples": 0}),
    (NncfCompressWeightsConfig, {"mode": "nf4"}),
    (NncfCompressWeightsConfig, {"group_size": 0}),
    (NncfCompressWeightsConfig, {"ratio": 1.5}),
    (OpenVinoConfig, {"inference_precision": "f16"}),
    (OpenVinoConfig, {"performance_hint": "FAST"}),
])
def test_configs_reject_out_of_range_fields(make, fields):
    with pytest.raises(InputError):
        make(**fields)


def test_openvino_and_nncf_send_no_usage_telemetry_from_hone():
    """Both phone home by default; hone blocks it where it imports them (see _optional)."""
    import subprocess
    import sys

    pytest.importorskip("nncf")
    code = (
        "from hone._optional import block_usage_telemetry; block_usage_telemetry()\n"
        "import openvino.tools.ovc.convert_impl as c; import nncf.telemetry.wrapper as w\n"
        "print(c.tm.__name__, type(w.telemetry).__name__)"
    )
    # Not in-process: NNCF turns its own telemetry off whenever pytest is imported.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    converter, nncf_telemetry = out.split()
    assert converter == "openvino.tools.ovc.telemetry_stub"
    assert nncf_telemetry != "NNCFTelemetry"  # its stub (a no-op)
