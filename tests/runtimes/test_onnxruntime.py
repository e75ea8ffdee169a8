import pytest
import torch

from hone.errors import InputError, Unsupported
from hone.passes.onnx.export import OnnxExportConfig
from hone.runtimes.onnxruntime import OnnxRuntime, OnnxRuntimeConfig
from hone.search.recipe import Step
from harness import assert_recipe_preserves_outputs, build, this_cpu
from tiny_models import TinyConv, tiny_mlp


def _recipe():
    return OnnxRuntime.propose(None, this_cpu(), "cpu")[0]


def test_export_and_run_keeps_answers_and_reads_back_providers():
    model, x = tiny_mlp()
    runner = assert_recipe_preserves_outputs(_recipe(), model, x)
    info = runner.info()
    assert info["providers"] == ["CPUExecutionProvider"]
    assert info["intra_op_num_threads"] == 1 and "onnx_opset" not in info  # the export's notes are its own
    assert runner.report()["steps"]["onnx_export"]["onnx_opset"] == 18


def test_a_graph_exported_with_a_symbolic_batch_serves_every_batch_size():
    import dataclasses

    model, x = tiny_mlp()  # batch 4
    runner, artifact, named, _ = build(_recipe(), model, x)  # the default export: a symbolic batch
    assert artifact.notes["onnx_export"]["dynamic_batch"] is True
    other = torch.randn(7, 32)
    assert runner.serves(tuple(named.values())) and runner.serves((other,))
    torch.testing.assert_close(runner(other)[0], model(other), rtol=1e-5, atol=1e-5)
    assert not runner.serves((torch.randn(3, 16),))  # only the batch is symbolic
    assert not runner.serves((x, x))


def test_the_static_exported_graph_serves_only_its_own_shapes():
    import dataclasses

    model, x = tiny_mlp()
    static = dataclasses.replace(_recipe(), passes=(Step("onnx_export", OnnxExportConfig(dynamic_batch=False)),))
    runner, artifact, named, _ = build(static, model, x)
    assert artifact.notes["onnx_export"]["dynamic_batch"] is False
    assert runner.serves(tuple(named.values()))
    assert not runner.serves((torch.randn(3, 32),))  # the export fixed the batch


def test_variants_on_cpu_and_cuda():
    cpu = OnnxRuntime.variants(None, None, "cpu", "onnx")
    assert [v.tag for v in cpu] == ["onnxruntime", "onnxruntime-extended", "onnxruntime-basic", "onnxruntime-disable"]
    assert [v.config.graph_optimization_level for v in cpu] == ["all", "extended", "basic", "disable"]
    assert cpu[0].alone and not any(v.alone for v in cpu[1:])  # the lower levels: stacked on quantizers only
    assert "overhead" in cpu[0].addresses
    assert [r.label for r in OnnxRuntime.propose(None, None, "cpu")] == ["onnxruntime"]
    assert _recipe().cost == 1.5 and _recipe().describe() == "onnx_export -> onnxruntime"
    cuda = {r.label: r for r in OnnxRuntime.propose(None, None, "cuda")}
    assert set(cuda) == {"onnxruntime-cuda", "onnxruntime-tensorrt"}
    assert cuda["onnxruntime-tensorrt"].compute_dtype == "float16" and cuda["onnxruntime-tensorrt"].cost == 4.0
    assert cuda["onnxruntime-cuda"].cost == 1.5
    assert OnnxRuntime.default_for == ("onnx",) and OnnxRuntime.consumes == ("onnx",)


def test_named_dict_outputs_survive_export():
    torch.manual_seed(0)
    runner, artifact, named, expected = build(_recipe(), TinyConv().eval(), torch.randn(2, 3, 8, 8))
    import onnx

    graph = onnx.load(str(artifact.path)).graph
    assert [o.name for o in graph.output] == ["logits", "features"]
    assert [i.name for i in graph.input] == ["pixels"]


class DataDependentBranch(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # control flow on a value: torch.export cannot capture it
            return x * 2
        return x - 1


def test_export_failure_is_unsupported_naming_the_cause_and_the_line():
    with pytest.raises(Unsupported) as info:
        build(_recipe(), DataDependentBranch(), torch.randn(2, 3))
    reason = str(info.value)
    assert reason.startswith("ONNX export failed: GuardOnDataDependentSymNode")
    assert "test_onnxruntime.py" in reason and "if x.sum() > 0" in reason
    assert "\x1b" not in reason


def test_configs_validate():
    with pytest.raises(InputError, match="execution provider 'npu'"):
        OnnxRuntimeConfig(ep="npu")
    with pytest.raises(InputError, match="opset 13"):
        OnnxExportConfig(opset=13)


def test_missing_execution_provider_is_unsupported():
    model, x = tiny_mlp()
    recipe = _recipe()
    cuda = type(recipe)(recipe.label, recipe.passes, Step("onnxruntime", OnnxRuntimeConfig(ep="tensorrt")))
    with pytest.raises(Unsupported, match="TensorrtExecutionProvider"):
        build(cuda, model, x)


def test_session_writes_its_optimized_graph_for_the_artifact():
    model, x = tiny_mlp()
    runner, artifact, _, _ = build(_recipe(), model, x)
    optimized = runner.info()["optimized_model"]
    assert optimized.endswith("model.optimized.onnx")
    import onnx

    assert len(onnx.load(optimized).graph.node) <= len(onnx.load(str(artifact.path)).graph.node)


def test_gpu_providers_absent_here_are_unsupported_with_the_install_hint():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    model, x = tiny_mlp()
    recipe = OnnxRuntime.propose(None, None, "cuda")[0]
    assert recipe.label == "onnxruntime-cuda"
    with pytest.raises(Unsupported, match=r"no CUDAExecutionProvider .*pip install onnxruntime-gpu"):
        build(recipe, model, x)


def test_session_options_are_validated():
    with pytest.raises(InputError, match="TensorRT execution provider"):
        OnnxRuntimeConfig(fp16=True)
    with pytest.raises(InputError, match="intra_op_threads"):
        OnnxRuntimeConfig(intra_op_threads=0)
    trt = OnnxRuntimeConfig(ep="tensorrt", fp16=True, graph_optimization_level="extended")
    assert OnnxRuntimeConfig.from_dict(trt.to_dict()) == trt


def test_inter_op_threads_run_the_graph_in_parallel_mode_with_the_same_answers():
    import dataclasses

    recipe = _recipe()
    parallel = dataclasses.replace(recipe, runtime=Step("onnxruntime", OnnxRuntimeConfig(inter_op_threads=2,
                                                                                          intra_op_threads=1)))
    model, x = tiny_mlp()
    runner = assert_recipe_preserves_outputs(parallel, model, x)
    info = runner.info()
    assert (info["inter_op_num_threads"], info["intra_op_num_threads"], info["execution_mode"]) == (2, 1, "parallel")
    assert OnnxRuntime.serving_variants(OnnxRuntimeConfig(), 1) == []
    assert OnnxRuntime.serving_variants(OnnxRuntimeConfig(), 4) == [
        ("inter-op 2x intra-op 2", {"inter_op_threads": 2, "intra_op_threads": 2})]
    assert "inter_op_threads" not in OnnxRuntimeConfig().to_dict()  # recipe keys stored before stay the same
    with pytest.raises(InputError):
        OnnxRuntimeConfig(inter_op_threads=0)
