"""The TensorRT runtimes: torch-tensorrt (`tensorrt`) and ONNX -> engine (`tensorrt_engine`).

On a machine without CUDA (or without the packages) this checks everything that needs no GPU:
availability and its reasons, configs, the precision/capability gates, proposals, the partition
accounting on a graph split the way torch-tensorrt splits it, the engine inspector parsing, the
ONNX preparation (fp16 conversion, Q/DQ checks) and the builder's error paths. The GPU tests at
the end build and run real engines where CUDA and the packages exist."""

import dataclasses
import json
import tempfile
import types
from pathlib import Path

import pytest
import torch

import hone._optional as optional
from hone._optional import is_available
from hone.errors import InputError, Unsupported
from hone.hardware.probe import GpuInfo
from hone.models.workload import FlatIO, InputSet, Workload, name_inputs, normalize_outputs
from hone.passes.onnx.export import OnnxExportConfig
from hone.passes.onnx.ort_quantize_static import OrtQuantizeStaticConfig
from hone.plugin import BuildContext
from hone.runtimes._trt_fallback import datatype_precision, layer_precisions, merge_layer_precisions, partition_report
from hone.runtimes.onnxruntime import OnnxRuntimeConfig
from hone.runtimes.tensorrt import NO_GPU, TensorRT, TensorRTConfig, compile_settings, resolve_ops
from hone.runtimes.tensorrt_engine import (
    TensorRTEngine, TensorRTEngineConfig, build_engine, convert_to_fp16, fold_int32_dequantize, network_flags,
    optimization_profile, qdq_summary, require_int8_qdq,
)
from hone.search.build import build_recipe
from hone.search.planner import plan
from hone.search.recipe import Recipe, Step
from hone.validate.compare import compare_output
from harness import build
from skips import REQUIRES_CUDA, REQUIRES_MODELOPT, REQUIRES_TENSORRT, REQUIRES_TORCH_TENSORRT
from tiny_models import TinyMLP, tiny_mlp

SOFTMAX = "torch.ops.aten._softmax.default"
INT8_QDQ = "ort-int8-qdq+onnx-tensorrt-int8"  # the symmetric QDQ quantizer, then the int8 engine
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason=REQUIRES_CUDA)
TORCH_TENSORRT = pytest.mark.skipif(not is_available("torch_tensorrt"), reason=REQUIRES_TORCH_TENSORRT)
TENSORRT = pytest.mark.skipif(not is_available("tensorrt"), reason=REQUIRES_TENSORRT)
MODELOPT = pytest.mark.skipif(not is_available("modelopt"), reason=REQUIRES_MODELOPT)


class SoftmaxMLP(torch.nn.Module):
    """Linear, relu, add | softmax | linear, mul, sigmoid: with softmax kept in PyTorch, two
    TensorRT subgraphs around one PyTorch subgraph."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Linear(16, 16)
        self.b = torch.nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.softmax(torch.relu(self.a(x)) + 1, dim=-1)
        return torch.sigmoid(self.b(h) * 2)


def _gpu_hw(hardware, capability=(9, 0), name="NVIDIA H100"):
    return dataclasses.replace(hardware, gpus=(GpuInfo(name, capability, 80 * 2**30),))


def _without(monkeypatch, *packages):
    """Make `packages` look uninstalled to the availability checks (they may be present)."""
    real = optional.is_available
    monkeypatch.setattr(optional, "is_available", lambda p: p not in packages and real(p))


# --- availability, configs, gates, proposals -------------------------------------------------


def test_available_says_cuda_only_and_names_the_missing_package(hardware, monkeypatch):
    assert TensorRT.available(hardware, "cpu") == "runs on cuda, not cpu"
    assert TensorRTEngine.available(hardware, "cpu") == "runs on cuda, not cpu"
    _without(monkeypatch, "torch_tensorrt", "tensorrt")
    gpu = _gpu_hw(hardware)
    assert TensorRT.available(gpu, "cuda").startswith("torch_tensorrt is not installed (pip install")
    assert TensorRTEngine.available(gpu, "cuda").startswith("tensorrt is not installed (pip install")


def test_unavailable_without_a_gpu_or_with_a_gpu_index_it_lacks(hardware):
    assert TensorRT.unavailable_here(dataclasses.replace(hardware, gpus=()), "cuda") == NO_GPU
    assert TensorRTEngine.unavailable_here(dataclasses.replace(hardware, gpus=()), "cuda") == NO_GPU
    assert "no cuda:3" in TensorRTEngine.unavailable_here(_gpu_hw(hardware), "cuda:3")
    assert TensorRTEngine.unavailable_here(_gpu_hw(hardware), "cuda:0") is None


def test_a_torch_tensorrt_built_for_another_torch_is_named_with_the_matching_pip_line(hardware, monkeypatch):
    import importlib.metadata as metadata

    versions = {"torch-tensorrt": "2.12.1", "torch": "2.13.0+cpu"}
    monkeypatch.setattr(metadata, "version", lambda d: versions[d])
    reason = TensorRT.unavailable_here(_gpu_hw(hardware), "cuda")
    assert "torch-tensorrt 2.12.1 is installed but built for torch 2.12" in reason
    assert "this environment has torch 2.13.0+cpu" in reason and "pip install 'torch-tensorrt==2.13.*'" in reason
    versions["torch-tensorrt"] = "2.13.0"
    assert TensorRT.unavailable_here(_gpu_hw(hardware), "cuda") is None


def test_config_validates_and_round_trips_through_json():
    for bad, match in [({"precision": "int4"}, "precision"), ({"min_block_size": 0}, "min_block_size"),
                       ({"torch_executed_ops": ("softmax",)}, "qualified op names"),
                       ({"optimization_level": 6}, "optimization_level"), ({"workspace_size": -1}, "workspace_size")]:
        with pytest.raises(InputError, match=match):
            TensorRTConfig(**bad)
    config = TensorRTConfig(precision="int8", min_block_size=3, torch_executed_ops=(SOFTMAX,), optimization_level=5)
    assert TensorRTConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config  # the list comes back a tuple
    engine = TensorRTEngineConfig(precision="int8", max_batch_size=32)
    assert TensorRTEngineConfig.from_dict(json.loads(json.dumps(engine.to_dict()))) == engine
    with pytest.raises(InputError, match="precision"):
        TensorRTEngineConfig(precision="fp8")


def test_torch_executed_ops_must_name_real_ops():
    assert resolve_ops((SOFTMAX,)) == [torch.ops.aten._softmax.default]
    with pytest.raises(InputError, match="no op 'torch.ops.aten.softmaxx.default'"):
        resolve_ops(("torch.ops.aten.softmaxx.default",))


def test_fp8_is_gated_on_compute_capability_and_proposed_only_where_it_runs(hardware):
    a100, h100 = _gpu_hw(hardware, (8, 0), "NVIDIA A100"), _gpu_hw(hardware, (9, 0))
    reason = TensorRT.precision_unavailable("fp8", a100, "cuda")
    assert "compute capability 8.9 or higher" in reason and "NVIDIA A100 has compute capability 8.0" in reason
    assert TensorRT.precision_unavailable("fp8", h100, "cuda") is None
    assert TensorRT.precision_unavailable("int8", a100, "cuda") is None
    labels = lambda hw: [r.label for r in TensorRT.propose(None, hw, "cuda")]  # noqa: E731
    assert labels(a100) == ["tensorrt-fp16", "tensorrt-fp32", "tensorrt-int8"]
    assert labels(h100) == ["tensorrt-fp16", "tensorrt-fp32", "tensorrt-int8", "tensorrt-fp8"]
    assert TensorRT.propose(None, h100, "cpu") == [] and TensorRTEngine.propose(None, h100, "cpu") == []
    by_label = {r.label: r for r in TensorRT.propose(None, h100, "cuda")}
    assert by_label["tensorrt-fp16"].compute_dtype == "float16" and by_label["tensorrt-fp8"].compute_dtype == "fp8"
    assert all(r.cost >= 4 for r in by_label.values())


def test_variants_on_an_unknown_machine_leave_fp8_out_and_the_summary_counts_subgraphs():
    assert [v.tag for v in TensorRT.variants(None, None, "cuda")] == ["tensorrt-fp16", "tensorrt-fp32", "tensorrt-int8"]
    assert TensorRT.variants(None, None, "cpu") == []
    from hone.runtimes.tensorrt import TensorRTRunner

    info = {"precision": "fp16", "trt_subgraphs": 2, "torch_subgraphs": 1}
    assert TensorRTRunner(torch.nn.Identity(), "cpu", info).summary() == ["TensorRT subgraphs 2, PyTorch subgraphs 1"]
    assert TensorRTRunner(torch.nn.Identity(), "cpu", {"precision": "fp16"}).summary() == []


def test_the_plan_on_a_gpu_keeps_tensorrt_recipes_with_the_install_hint(hardware, monkeypatch):
    _without(monkeypatch, "torch_tensorrt", "tensorrt")
    workload = Workload("t", TinyMLP(), [InputSet("bs2", {"x": torch.randn(2, 32)})])
    planned = {p.recipe.label: p for p in plan(workload, _gpu_hw(hardware), "cuda")}
    assert planned["tensorrt-fp16"].unavailable.startswith("tensorrt: torch_tensorrt is not installed")
    assert planned[INT8_QDQ].unavailable  # the engine runtime (or its ONNX passes) says why


def test_compile_settings_use_torch_tensorrt_2_13_names(tmp_path):
    ctx = BuildContext((torch.randn(2, 4),), ["x"], ["y"], tmp_path, 1)
    fp32 = compile_settings(TensorRTConfig(precision="fp32", torch_executed_ops=(SOFTMAX,)), ctx, "cuda", ())
    assert fp32["disable_tf32"] is True and fp32["torch_executed_ops"] == {SOFTMAX} and fp32["min_block_size"] == 5
    assert fp32["timing_cache_path"].startswith(str(tmp_path))  # never the shared file in /tmp
    assert "enable_autocast" not in fp32 and "enabled_precisions" not in fp32  # the dynamo path ignores the latter
    fp16 = compile_settings(TensorRTConfig(precision="fp16"), ctx, "cuda", ctx.example_inputs)
    assert fp16["enable_autocast"] is True and fp16["autocast_low_precision_type"] is torch.float16
    assert fp16["disable_tf32"] is False and fp16["autocast_calibration_dataloader"] == [ctx.example_inputs]


@MODELOPT
def test_modelopt_calibrates_a_copy_on_the_calibration_batches(tmp_path):
    """Runs on CPU where nvidia-modelopt is installed (its calibration needs no GPU; its export
    to tensorrt.quantize_op does, so the build itself is tested on a GPU below)."""
    from hone.runtimes.tensorrt import quantize_with_modelopt

    model, x = tiny_mlp()
    flat = FlatIO(model, ["x"], ["output"]).eval()
    ctx = BuildContext((x,), ["x"], ["output"], tmp_path, 1, calibration=(torch.randn(10, 32),))
    quantized, _, notes = quantize_with_modelopt(flat, "int8", ctx, torch.device("cpu"))
    assert notes["quantized_layers"] == 2 and notes["calibration_batches"] == 3  # 10 samples, batches of 4
    assert type(model.fc1) is torch.nn.Linear and type(quantized.module.fc1) is not torch.nn.Linear


# --- partition accounting ---------------------------------------------------------------------


class TorchTensorRTModule(torch.nn.Module):
    """Stand-in for torch-tensorrt's engine module: runs the subgraph it replaced. The report
    must not look inside it (an engine is opaque): if it did, its ops would count as fallback."""

    def __init__(self, graph_module: torch.nn.Module):
        super().__init__()
        self.graph_module = graph_module

    def forward(self, *args):
        return self.graph_module(*args)


def _partition_like_torch_tensorrt(model: torch.nn.Module, x: torch.Tensor, torch_ops: set[str]):
    """Export and split the graph as torch-tensorrt's fast partitioner does (its TRTPartitioner is
    torch's _SplitterBase with `_run_on_gpu_` for the PyTorch side), then put an engine stand-in
    in place of each `_run_on_acc_` subgraph."""
    from torch.fx.passes.operator_support import OperatorSupportBase
    from torch.fx.passes.splitter_base import _SplitterBase, _SplitterSettingBase

    from hone.runtimes._trt_fallback import op_name

    class Converters(OperatorSupportBase):
        def is_node_supported(self, submodules, node):
            return node.op == "call_function" and op_name(node.target) not in torch_ops

    gm = torch.export.export(model, (x,)).run_decompositions().module()
    splitter = _SplitterBase(gm, (x,), Converters(), _SplitterSettingBase(min_acc_module_size=1, allow_non_tensor=True),
                             non_acc_submodule_name="_run_on_gpu_")
    splitter.tag(splitter.put_nodes_into_subgraphs())
    split = splitter.split(remove_tag=True)
    for name, child in list(split.named_children()):
        if name.startswith("_run_on_acc"):
            setattr(split, name, TorchTensorRTModule(child))
    return split


def test_partition_report_counts_engines_and_lists_the_ops_that_fell_back():
    model, x = SoftmaxMLP().eval(), torch.randn(4, 16)
    split = _partition_like_torch_tensorrt(model, x, {SOFTMAX})
    names = [n.target for n in split.graph.nodes if n.op == "call_module"]
    assert sum(n.startswith("_run_on_acc") for n in names) == 2
    report = partition_report(split)
    # The guard-only `_run_on_gpu_0` (export's input checks) computes nothing: not counted.
    assert report == {"trt_subgraphs": 2, "torch_subgraphs": 1, "fallback_ops": {SOFTMAX: 1}}
    with torch.no_grad():  # the structure is the real thing: it computes the model
        torch.testing.assert_close(split(x), model(x))
    nothing_kept = partition_report(_partition_like_torch_tensorrt(model, x, set()))
    assert nothing_kept == {"trt_subgraphs": 1, "torch_subgraphs": 0, "fallback_ops": {}}


def test_partition_report_counts_ops_left_in_the_top_graph():
    """The global partitioner leaves unsupported nodes in the top graph, not in a submodule."""

    class Root(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self._run_on_acc_0 = TorchTensorRTModule(torch.nn.Linear(4, 4))

        def forward(self, x):
            return torch.ops.aten._softmax.default(self._run_on_acc_0(x), -1, False)

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, module, name):
            return name.startswith("_run_on") or super().is_leaf_module(module, name)

    root = Root()
    gm = torch.fx.GraphModule(root, Tracer().trace(root))
    assert partition_report(gm) == {"trt_subgraphs": 1, "torch_subgraphs": 0, "fallback_ops": {SOFTMAX: 1}}


def test_layer_precisions_read_the_inspector_json():
    detailed = {"Layers": [
        {"Name": "gemm", "LayerType": "CaskGemm",
         "Inputs": [{"Name": "x", "Format/Datatype": "Row major linear FP16 format"}]},
        {"Name": "conv", "Inputs": [{"Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}]},
        {"Name": "weights", "LayerType": "Constant", "Inputs": [], "Outputs": [{"Format/Datatype": "Float"}]},
        {"Name": "head", "Inputs": [{"Format/Datatype": "Float"}]},
        {"Name": "cast", "Inputs": [{"Format/Datatype": "Row major linear FP8 format"}]},
    ], "Bindings": ["x", "y"]}
    report = layer_precisions(json.dumps(detailed))
    assert report == {"engine_layers": 5, "layers_by_precision": {"fp16": 1, "fp32": 1, "fp8": 1, "int8": 1}}
    names_only = layer_precisions(json.dumps({"Layers": ["gemm", "relu"], "Bindings": ["x", "y"]}))
    assert names_only == {"engine_layers": 2}  # no precision guessed from names
    assert merge_layer_precisions([report, report]) == {
        "engine_layers": 10, "layers_by_precision": {"fp16": 2, "fp32": 2, "fp8": 2, "int8": 2}}
    assert merge_layer_precisions([report, names_only]) == {"engine_layers": 7}
    assert datatype_precision("Half") == "fp16" and datatype_precision("N/A due to dynamic shapes") == "unknown"
    assert datatype_precision("Row major linear UInt8 format") == "uint8"
    assert layer_precisions("not json") == {}


# --- ONNX -> engine: graph preparation and the builder's error paths ------------------------


def _onnx(model, x, *passes, calibration=None):
    steps = (Step("onnx_export", OnnxExportConfig()), *passes)
    _, artifact, _, _ = build(Recipe("onnx", steps, Step("onnxruntime", OnnxRuntimeConfig())), model, x,
                              calibration=calibration)
    return artifact.path


def _ort(path, x):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def test_fp16_conversion_keeps_fp32_io_and_the_answers_within_fp16_tolerance(tmp_path):
    import onnx

    model, x = tiny_mlp()
    converted, notes = convert_to_fp16(_onnx(model, x), tmp_path)
    graph = onnx.load(str(converted)).graph
    assert {t.data_type for t in graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert [i.type.tensor_type.elem_type for i in [*graph.input, *graph.output]] == [onnx.TensorProto.FLOAT] * 2
    with torch.no_grad():
        check = compare_output("output", _ort(converted, x), model(x), "float16")
    assert check.passed, check
    assert notes["graph"] == converted.name


def test_int8_needs_a_qdq_graph_tensorrt_can_take(tmp_path):
    model, x = tiny_mlp()
    calibration = (torch.randn(64, 32),)
    with pytest.raises(Unsupported, match="explicitly quantized .QDQ. ONNX graph: put ort_quantize_static"):
        require_int8_qdq(_onnx(model, x))
    default_qdq = _onnx(model, x, Step("ort_quantize_static", OrtQuantizeStaticConfig()), calibration=calibration)
    with pytest.raises(Unsupported, match="signed int8 Q/DQ with zero points of 0; this graph has [1-9]"):
        require_int8_qdq(default_qdq)
    recipe = _int8_qdq_recipe()
    assert [s.name for s in recipe.passes] == ["onnx_export", "ort_quantize_static"] and recipe.compute_dtype == "int8"
    qdq = _onnx(model, x, recipe.passes[1], calibration=calibration)
    summary = require_int8_qdq(qdq)
    assert summary["quantize_linear"] >= 2 and summary["uint8"] == summary["nonzero_zero_points"] == 0
    # ORT stores biases as int32 behind a DequantizeLinear; TensorRT's Q/DQ take 8-bit types:
    # folded into the float biases ORT computes, with the same answers.
    folded, count = fold_int32_dequantize(qdq, tmp_path)
    assert count == 2 and qdq_summary(folded)["dequantize_linear"] == qdq_summary(qdq)["dequantize_linear"] - 2
    torch.testing.assert_close(_ort(folded, x), _ort(qdq, x), rtol=0, atol=0)
    assert fold_int32_dequantize(folded, tmp_path) == (folded, 0)


def _int8_qdq_recipe() -> Recipe:
    """The int8 engine's recipe as the composer stacks it in the default CUDA plan."""
    from hone.search.compose import Composer

    (stack,) = [s for s in Composer(None, None, "cuda").default_stacks() if s.recipe.label == INT8_QDQ]
    return stack.recipe


def test_the_int8_engine_needs_the_symmetric_qdq_graph_and_is_composed_with_it():
    from hone.passes.onnx.ort_quantize_static import OrtQuantizeStatic
    from hone.search.compose import Composer

    fp16, int8 = TensorRTEngine.variants(None, None, "cuda", "onnx")
    assert (fp16.tag, fp16.compute_dtype, fp16.cost) == ("onnx-tensorrt-fp16", "float16", 3.5)
    assert int8.needs == frozenset({"int8-qdq-symmetric"}) and not int8.alone
    (qdq,) = OrtQuantizeStatic.variants(None, None, "cuda", "onnx")
    assert qdq.gives == int8.needs
    # Alone, only the fp16 engine: int8 takes a graph quantized for it.
    assert [r.label for r in TensorRTEngine.propose(None, None, "cuda")] == ["onnx-tensorrt-fp16"]
    assert TensorRTEngine.propose(None, None, "cuda")[0].cost == 4.0
    recipe = _int8_qdq_recipe()
    assert recipe.cost == 4.5 and recipe.runtime == Step("tensorrt_engine", TensorRTEngineConfig(precision="int8"))
    assert recipe.passes[1].config == qdq.config
    # ONNX Runtime does not keep the symmetric form's purpose: no QDQ recipe on its CUDA providers.
    assert OrtQuantizeStatic.propose(None, None, "cuda") == []
    assert Composer(None, None, "cuda").parse(INT8_QDQ).recipe == recipe


def _fake_trt(version="11.0.0.114", parses=True, builds=True):
    """Just enough of the tensorrt module for build_engine's control flow; the API names it
    uses were checked against the TensorRT 11.0 bindings."""
    calls = types.SimpleNamespace(flags=None, cleared=[], profiles=[], level=None)

    class ILogger:
        Severity = types.SimpleNamespace(ERROR=1, WARNING=2)

        def __init__(self):
            pass

    class Network:
        num_inputs = 1

        def get_input(self, i):
            return types.SimpleNamespace(name="x", shape=(-1, 32))

    class Parser:
        num_errors = 2

        def __init__(self, network, log):
            self.log = log

        def parse_from_file(self, path):
            return parses

        def get_error(self, i):
            return f"In node {i} (Attention): UNSUPPORTED_NODE"

    class Config:
        def clear_flag(self, flag):
            calls.cleared.append(flag)

        def add_optimization_profile(self, profile):
            calls.profiles.append(profile)

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, low, opt, high):
            self.shapes[name] = (low, opt, high)

    class Builder:
        def __init__(self, log):
            self.log = log

        def create_network(self, flags):
            calls.flags = flags
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            if builds:
                return b"engine"
            self.log.log(1, "Internal error: no tactic for node Gemm_0")
            return None

    trt = types.SimpleNamespace(
        __version__=version, ILogger=ILogger, Builder=Builder, OnnxParser=Parser,
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=0),
        BuilderFlag=types.SimpleNamespace(TF32="TF32"), ProfilingVerbosity=types.SimpleNamespace(DETAILED="DETAILED"),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="WORKSPACE"),
    )
    return trt, calls


def test_build_engine_turns_parser_and_builder_failures_into_unsupported(tmp_path):
    ctx = BuildContext((torch.randn(4, 32),), ["x"], ["y"], tmp_path, 1, device="cuda")
    trt, _ = _fake_trt(parses=False)
    parser_errors = r"parser rejected the model: In node 0 \(Attention\): UNSUPPORTED_NODE \| In node 1"
    with pytest.raises(Unsupported, match=parser_errors):
        build_engine(trt, tmp_path / "m.onnx", TensorRTEngineConfig(), ctx)
    trt, _ = _fake_trt(builds=False)
    with pytest.raises(Unsupported, match="could not build the engine: Internal error: no tactic for node Gemm_0"):
        build_engine(trt, tmp_path / "m.onnx", TensorRTEngineConfig(), ctx)


def test_build_engine_is_strongly_typed_clears_tf32_for_fp32_and_profiles_the_batch(tmp_path):
    ctx = BuildContext((torch.randn(4, 32),), ["x"], ["y"], tmp_path, 1, device="cuda")
    trt, calls = _fake_trt(version="10.16.1.11")
    serialized, profile = build_engine(trt, tmp_path / "m.onnx", TensorRTEngineConfig(precision="fp32"), ctx)
    assert serialized == b"engine" and calls.flags == 1 << 0 and calls.cleared == ["TF32"]
    assert profile == {"x": {"min": (1, 32), "opt": (4, 32), "max": (4, 32)}} and len(calls.profiles) == 1
    trt, calls = _fake_trt()  # TensorRT 11: strongly typed always, the flag deprecated
    _, profile = build_engine(trt, tmp_path / "m.onnx", TensorRTEngineConfig(precision="tf32", max_batch_size=16), ctx)
    assert calls.flags == 0 and calls.cleared == [] and profile["x"]["max"] == (16, 32)
    assert network_flags(_fake_trt("10.3.0")[0]) == 1


def test_static_inputs_need_no_optimization_profile(tmp_path):
    trt, calls = _fake_trt()
    network = types.SimpleNamespace(num_inputs=1, get_input=lambda i: types.SimpleNamespace(name="x", shape=(4, 32)))
    ctx = BuildContext((torch.randn(4, 32),), ["x"], ["y"], tmp_path, 1)
    assert optimization_profile(trt.Builder(None), network, None, ctx, None) == {}


# --- on a GPU: real builds --------------------------------------------------------------------


def _build_on_cuda(recipe: Recipe, model: torch.nn.Module, x: torch.Tensor, calibration=None):
    named = name_inputs(model, (x,))
    with torch.inference_mode():
        expected = normalize_outputs(model(**named))
    ctx = BuildContext(tuple(t.cuda() for t in named.values()), list(named), list(expected),
                       Path(tempfile.mkdtemp(prefix="hone-test-")), 1, device="cuda", calibration=calibration)
    runner, artifact, _ = build_recipe(recipe, FlatIO(model, list(named), list(expected)), ctx)
    (got,) = runner(*ctx.example_inputs)
    dtype = runner.compute_dtype or artifact.compute_dtype
    return runner, ctx, compare_output("output", got.float().cpu(), next(iter(expected.values())), dtype)


@TORCH_TENSORRT
@pytest.mark.slow
@CUDA
def test_torch_tensorrt_fp32_keeps_answers_reports_fallback_and_saves(tmp_path):
    config = TensorRTConfig(precision="fp32", min_block_size=1, torch_executed_ops=(SOFTMAX,))
    model, x = SoftmaxMLP().eval(), torch.randn(4, 16)
    runner, ctx, check = _build_on_cuda(Recipe("t", (), Step("tensorrt", config)), model, x)
    assert check.passed, check
    info = runner.info()
    assert info["trt_subgraphs"] == 2 and info["torch_subgraphs"] >= 1 and info["fallback_ops"][SOFTMAX] == 1
    assert info["layers_by_precision"].get("fp32", 0) > 0
    files = runner.save(tmp_path)
    loaded = TensorRT(config).load(tmp_path, files, ctx)
    torch.testing.assert_close(loaded(*ctx.example_inputs)[0], runner(*ctx.example_inputs)[0])


@TORCH_TENSORRT
@pytest.mark.slow
@CUDA
def test_torch_tensorrt_fp16_runs_fp16_layers():
    model, x = tiny_mlp()
    runner, _, check = _build_on_cuda(Recipe("t", (), Step("tensorrt", TensorRTConfig(min_block_size=1))), model, x)
    assert check.passed, check
    assert runner.compute_dtype == "float16" and runner.info()["layers_by_precision"].get("fp16", 0) > 0


@TORCH_TENSORRT
@MODELOPT
@pytest.mark.slow
@CUDA
def test_torch_tensorrt_int8_calibrates_with_modelopt_and_runs_int8_layers():
    model, x = tiny_mlp(batch=8)
    config = TensorRTConfig(precision="int8", min_block_size=1)
    runner, _, check = _build_on_cuda(Recipe("t", (), Step("tensorrt", config)), model, x,
                                      calibration=(torch.randn(64, 32),))
    info = runner.info()
    assert info["quantized_layers"] == 2 and info["layers_by_precision"].get("int8", 0) > 0
    assert check.cosine > 0.99, check


@TENSORRT
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@CUDA
def test_engine_from_onnx_keeps_answers_and_loads_back(precision, tmp_path):
    model, x = tiny_mlp()
    recipe = Recipe("e", (Step("onnx_export", OnnxExportConfig()),),
                    Step("tensorrt_engine", TensorRTEngineConfig(precision=precision)))
    runner, ctx, check = _build_on_cuda(recipe, model, x)
    assert check.passed, check
    assert runner.info()["layers_by_precision"].get(precision, 0) > 0
    files = runner.save(tmp_path)
    loaded = TensorRTEngine(TensorRTEngineConfig(precision=precision)).load(tmp_path, files, ctx)
    torch.testing.assert_close(loaded(*ctx.example_inputs)[0], runner(*ctx.example_inputs)[0])


@TENSORRT
@pytest.mark.slow
@CUDA
def test_engine_from_the_qdq_chain_runs_int8_layers():
    model, x = tiny_mlp(batch=8)
    recipe = _int8_qdq_recipe()
    runner, _, check = _build_on_cuda(recipe, model, x, calibration=(torch.randn(64, 32),))
    assert runner.info()["layers_by_precision"].get("int8", 0) > 0
    assert check.cosine > 0.99, check
