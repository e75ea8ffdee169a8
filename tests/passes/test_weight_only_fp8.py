import copy
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

import skips
from hone._optional import is_available
from hone.errors import InputError, Unsupported
from hone.hardware.probe import GpuInfo
from hone.models.workload import FlatIO, InputSet, Workload, name_inputs, normalize_outputs
from hone.passes.quantize import Scheme
from hone.passes.torch.fp8 import Fp8, Fp8Config
from hone.passes.torch.weight_only import WeightOnly, WeightOnlyConfig
from hone.plugin import Artifact, BuildContext
from hone.runtimes.inductor import InductorConfig
from hone.search.build import build_recipe
from hone.search.planner import plan
from hone.search.recipe import Recipe, Step
from tiny_models import TinyMLP, tiny_mlp

REQUIRES_TORCHAO = pytest.mark.skipif(not is_available("torchao"), reason=skips.REQUIRES_TORCHAO)
REQUIRES_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason=skips.REQUIRES_CUDA)
CPU_REASON = "fp8 needs a CUDA GPU with compute capability 8.9 or higher (Ada, Hopper, Blackwell); this run is on cpu"


class Wide(torch.nn.Module):
    """Layers the int4 packings take (in_features a multiple of the group, out a multiple of 16),
    and a head the CPU packing cannot take (10 outputs)."""

    def __init__(self):
        super().__init__()
        self.up = torch.nn.Linear(128, 256)
        self.down = torch.nn.Linear(256, 64)
        self.head = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.down(torch.relu(self.up(x)))))


def _wide(batch: int = 4):
    torch.manual_seed(0)
    return Wide().eval(), torch.randn(batch, 128)


def _build(recipe: Recipe, model: torch.nn.Module, x: torch.Tensor, device: str = "cpu"):
    named = name_inputs(model, (x,))
    with torch.inference_mode():
        expected = normalize_outputs(model(**named))
    ctx = BuildContext(tuple(named.values()), list(named), list(expected),
                       Path(tempfile.mkdtemp(prefix="hone-test-")), 1, device=device)
    runner, artifact, _ = build_recipe(recipe, FlatIO(model, list(named), list(expected)), ctx)
    (got,) = runner(*(t.to(device) for t in named.values()))
    return artifact, got.float().cpu(), next(iter(expected.values()))


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm()).item()


def _eager(config: WeightOnlyConfig, model: torch.nn.Module, x: torch.Tensor):
    """The pass alone, its product called eagerly: checks what it built without paying for a
    compile. (No runtime: the eager runtime takes no torch-quantized model.)"""
    named = name_inputs(model, (x,))
    with torch.inference_mode():
        expected = normalize_outputs(model(**named))
    flat = FlatIO(model, list(named), list(expected)).eval()
    artifact = WeightOnly(config).apply(Artifact("torch", flat), _ctx(x))
    assert artifact.format == "torch-quantized"
    with torch.inference_mode():
        (got,) = artifact.module(*named.values())
    return artifact, got.float().cpu(), next(iter(expected.values()))


def _notes(artifact) -> dict:
    return artifact.notes[WeightOnly.name]


def _ctx(x: torch.Tensor, device: str = "cpu") -> BuildContext:
    return BuildContext((x,), ["x"], ["output"], Path(tempfile.mkdtemp(prefix="hone-test-")), 1, device=device)


def _gpu_hw(hardware, capability, name="Fake GPU"):
    return dataclasses.replace(hardware, gpus=(GpuInfo(name, capability, 16 * 2**30),))


def test_importing_the_passes_does_not_import_torchao():
    code = "import sys, hone.passes.torch.weight_only, hone.passes.torch.fp8; print('torchao' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_configs_validate_round_trip_and_give_the_scheme():
    for bad, match in [(dict(bits=3), "bits must be 8 or 4"), (dict(bits=8, group_size=128), "per output channel"),
                       (dict(bits=4, group_size=48), "group_size must be one of"),
                       (dict(activation_dtype="float16"), "activation_dtype")]:
        with pytest.raises(InputError, match=match):
            WeightOnlyConfig(**bad)
    with pytest.raises(InputError, match="granularity"):
        Fp8Config(granularity="per_block")
    for config in (WeightOnlyConfig(bits=4, group_size=64, keep_float=("fc1",)), Fp8Config(granularity="per_tensor")):
        assert type(config).from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert WeightOnly(WeightOnlyConfig(bits=4, group_size=64)).scheme() == Scheme(weight_bits=4, weight_group=64, activations="none")
    assert WeightOnly().scheme() == Scheme(weight_bits=8, weight_group=0, activations="none")
    assert Fp8().scheme() == Scheme(weight_bits=8, float_format="e4m3", activations="dynamic")


def test_weight_only_recipes_are_proposed_with_inductor():
    cpu = {r.label: r for r in WeightOnly.propose(None, None, "cpu")}
    assert {label: r.compute_dtype for label, r in cpu.items()} == {
        "torchao-int8-weight-only": "int8", "torchao-int4-weight-only": "int4"}
    assert all(r.runtime == Step("inductor", InductorConfig(freezing=True)) for r in cpu.values())
    assert all(r.cost == 2.5 for r in cpu.values())
    assert cpu["torchao-int4-weight-only"].passes[0].config == WeightOnlyConfig(bits=4, group_size=128)
    cuda = WeightOnly.propose(None, None, "cuda")
    assert [r.label for r in cuda] == list(cpu) and all(r.runtime.name == "inductor" for r in cuda)
    # CUDA: no freezing (it buys CPU weight prepacking; tensor-subclass weights need nothing folded).
    assert all(r.runtime == Step("inductor", InductorConfig(freezing=False)) for r in cuda)
    (fp8,) = Fp8.propose(None, None, "cuda")
    assert fp8.runtime == Step("inductor", InductorConfig(freezing=False)) and fp8.cost == 2.5
    assert WeightOnly.produces == Fp8.produces == "torch-quantized"
    memory = WeightOnly.variants(None, None, "cpu")[0].addresses["memory"]
    assert memory.weight == 0.5 and "bytes" in memory.reason


@REQUIRES_TORCHAO
def test_int8_weight_only_keeps_answers_and_counts_layers():
    model, x = tiny_mlp()
    before = copy.deepcopy(model.state_dict())
    artifact, got, want = _eager(WeightOnlyConfig(bits=8), model, x)
    assert artifact.compute_dtype == "int8"
    notes = _notes(artifact)
    assert notes["quantized_layers"] == 2 and notes["skipped_layers"] == {} and notes["bits"] == 8
    assert notes["method"].startswith("Int8WeightOnlyConfig") and notes["quant_s"] >= 0
    inner = artifact.module.module
    assert type(inner.fc1.weight).__name__ == "Int8Tensor" and type(inner.fc2.weight).__name__ == "Int8Tensor"
    # The reference module is untouched.
    assert type(model.fc1.weight) is torch.nn.Parameter
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert got.dtype == torch.float32 and _rel_err(got, want) < 0.02


@REQUIRES_TORCHAO
def test_keep_float_leaves_the_layer_a_plain_fp32_linear():
    model, x = tiny_mlp()
    artifact, got, want = _eager(WeightOnlyConfig(bits=8, keep_float=("fc2",)), model, x)
    inner = artifact.module.module
    assert type(inner.fc2) is torch.nn.Linear and type(inner.fc2.weight) is torch.nn.Parameter
    assert inner.fc2.weight.dtype == torch.float32 and not inner.fc2._forward_pre_hooks
    assert type(inner.fc1.weight).__name__ == "Int8Tensor"
    assert _notes(artifact)["quantized_layers"] == 1 and _notes(artifact)["kept_float"] == ["fc2"]
    assert _rel_err(got, want) < 0.02


@REQUIRES_TORCHAO
def test_keep_float_with_an_unknown_name_is_an_input_error():
    model, x = tiny_mlp()
    with pytest.raises(InputError, match="fc3"):
        WeightOnly(WeightOnlyConfig(keep_float=("fc3",))).apply(Artifact("torch", FlatIO(model, ["x"], ["output"])), _ctx(x))
    with pytest.raises(InputError, match="fc3"):  # before the device check: the name is wrong anywhere
        Fp8(Fp8Config(keep_float=("fc3",))).apply(Artifact("torch", FlatIO(model, ["x"], ["output"])), _ctx(x))


@REQUIRES_TORCHAO
def test_int4_weight_only_runs_the_cpu_kernel_and_skips_what_it_cannot_pack():
    # torchao 0.18 + torch 2.13: the CPU int4 kernel is aten._weight_int4pack_mm_for_cpu behind
    # the prototype Int4OpaqueTensor; it needs out_features divisible by 16 (the 10-way head is not).
    model, x = _wide()
    artifact, got, want = _eager(WeightOnlyConfig(bits=4, group_size=32), model, x)
    notes = _notes(artifact)
    assert notes["kernel"] == "aten._weight_int4pack_mm_for_cpu" and artifact.compute_dtype == "int4"
    assert notes["quantized_layers"] == 2 and list(notes["skipped_layers"]) == ["head"]
    assert "not a multiple of 16" in notes["skipped_layers"]["head"]
    inner = artifact.module.module
    assert type(inner.up.weight).__name__ == "Int4OpaqueTensor" and type(inner.head.weight) is torch.nn.Parameter
    assert _rel_err(got, want) < 0.1


@REQUIRES_TORCHAO
def test_int4_without_a_cpu_kernel_is_unsupported_with_the_reason():
    model, x = _wide()
    flat = Artifact("torch", FlatIO(model, ["x"], ["output"]))
    with pytest.raises(Unsupported, match="fast for bfloat16 activations only"):
        WeightOnly(WeightOnlyConfig(bits=4, group_size=32, activation_dtype="float32")).apply(flat, _ctx(x))
    with pytest.raises(Unsupported, match="no cpu kernel for group_size 256"):
        WeightOnly(WeightOnlyConfig(bits=4, group_size=256)).apply(flat, _ctx(x))
    # No layer left: tiny_mlp's 32 inputs are no multiple of 128, its 10 outputs no multiple of 16.
    mlp, x = tiny_mlp()
    with pytest.raises(Unsupported, match="no Linear layer left to quantize .*fc1: in_features 32"):
        WeightOnly(WeightOnlyConfig(bits=4, group_size=128)).apply(Artifact("torch", FlatIO(mlp, ["x"], ["output"])), _ctx(x))


@REQUIRES_TORCHAO
def test_int8_with_float32_activations_says_it_dequantizes():
    model, x = tiny_mlp()
    artifact, got, want = _eager(WeightOnlyConfig(bits=8, activation_dtype="float32"), model, x)
    assert _notes(artifact)["kernel"].startswith("dequantize-then-matmul")
    assert _rel_err(got, want) < 0.01


@pytest.mark.slow
@REQUIRES_TORCHAO
def test_proposed_recipes_reach_the_kernels_through_inductor():
    from torch._inductor.utils import run_and_get_code

    model, x = _wide()
    for recipe, kernel in zip(WeightOnly.propose(None, None, "cpu"), ("_weight_int8pack_mm", "_weight_int4pack_mm_for_cpu")):
        torch._dynamo.reset()
        artifact, got, want = _build(recipe, model, x)
        compiled = torch.compile(artifact.module)
        with torch._inductor.config.patch(freezing=True), torch.inference_mode():
            _, code = run_and_get_code(compiled, x)
        assert kernel in "\n".join(code), recipe.label
        assert _rel_err(got, want) < 0.1


@REQUIRES_TORCHAO
def test_fp8_on_cpu_is_unavailable_with_the_capability_reason(hardware):
    assert Fp8.available(hardware, "cpu") == CPU_REASON
    assert Fp8.propose(None, hardware, "cpu")[0].label == "fp8"
    workload = Workload("t", TinyMLP(), [InputSet("bs2", {"x": torch.randn(2, 32)})])
    planned = {p.recipe.label: p for p in plan(workload, hardware, "cpu")}
    assert planned["fp8"].unavailable == f"fp8: {CPU_REASON}"
    assert planned["fp8"].recipe.compute_dtype == "fp8"
    for label in ("torchao-int8-weight-only", "torchao-int4-weight-only"):
        assert planned[label].unavailable is None


def test_fp8_capability_gate_names_the_gpu(hardware):
    old = Fp8.unavailable_here(_gpu_hw(hardware, (8, 0), "NVIDIA A100"), "cuda")
    assert "NVIDIA A100" in old and "8.0" in old and old.startswith("fp8 needs a CUDA GPU with compute capability 8.9")
    assert "8.6" in Fp8.unavailable_here(_gpu_hw(hardware, (8, 6)), "cuda")
    for capability in ((8, 9), (9, 0), (10, 0)):
        assert Fp8.unavailable_here(_gpu_hw(hardware, capability), "cuda") is None
    assert "no CUDA GPU" in Fp8.unavailable_here(dataclasses.replace(hardware, gpus=()), "cuda")


def test_fp8_apply_rechecks_the_device(monkeypatch):
    model, x = tiny_mlp()
    flat = Artifact("torch", FlatIO(model, ["x"], ["output"]))
    with pytest.raises(Unsupported, match="this run is on cpu"):
        Fp8().apply(flat, _ctx(x))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 6))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake A10")
    with pytest.raises(Unsupported, match="Fake A10 has compute capability 8.6"):
        Fp8().apply(flat, _ctx(x, "cuda"))


def _fp8_capable() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)


@pytest.mark.gpu
@REQUIRES_CUDA
@REQUIRES_TORCHAO
@pytest.mark.skipif(not _fp8_capable(), reason=f"{skips.REQUIRES_CUDA} with compute capability 8.9+")
def test_fp8_runs_on_a_capable_gpu():
    model, x = _wide(batch=16)
    (recipe,) = Fp8.propose(None, None, "cuda")
    artifact, got, want = _build(recipe, model, x, "cuda")
    notes = artifact.notes["fp8"]
    assert artifact.compute_dtype == "fp8" and notes["quantized_layers"] == 2
    assert list(notes["skipped_layers"]) == ["head"]  # 10 outputs: not a multiple of 16
    assert type(artifact.module.module.up.weight).__name__ == "Float8Tensor"
    assert _rel_err(got, want) < 0.1


@pytest.mark.gpu
@REQUIRES_CUDA
@REQUIRES_TORCHAO
def test_weight_only_runs_on_cuda():
    model, x = _wide(batch=16)
    for recipe in WeightOnly.propose(None, None, "cuda"):
        torch._dynamo.reset()
        try:
            artifact, got, want = _build(recipe, model, x, "cuda")
        except Unsupported as exc:  # int4 tinygemm needs sm80+; the reason must say so
            assert recipe.compute_dtype == "int4" and "8.0 or higher" in str(exc)
            continue
        assert _notes(artifact)["quantized_layers"] >= 2 and _rel_err(got, want) < 0.1
