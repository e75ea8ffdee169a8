"""AOTInductor: one compile (~15-30 s here) shared by the module's tests; export-only checks
need no compile."""

import pytest
import torch

from hone.errors import InputError, Unsupported
from hone.models.workload import FlatIO
from hone.plugin import BuildContext
from hone.runtimes.aoti import Aoti, AotiConfig, export_program
from hone.search.recipe import Recipe, Step
from harness import build
from tiny_models import BatchBranch, TinyConv, tiny_mlp
from hone.validate.compare import compare_output

RECIPE = Recipe("aoti", (), Step("aoti", AotiConfig()))


class ValueBranch(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x + 1


@pytest.fixture(scope="module")
def conv_package():
    """TinyConv (dict outputs) compiled from a batch-1 example: the exporter specialises size 1,
    so this also covers exporting from a batch of 2 made of repeated rows."""
    torch.manual_seed(0)
    model = TinyConv().eval()
    runner, artifact, named, expected = build(RECIPE, model, torch.randn(1, 3, 8, 8))
    return model, runner, named, expected


def _assert_matches_eager(model, runner, pixels):
    expected = model(pixels=pixels)
    outputs = runner(pixels)
    for name, got in zip(["logits", "features"], outputs):
        check = compare_output(name, got, expected[name], "float32")
        assert check.passed, f"{name} at batch {pixels.shape[0]}: max abs err {check.max_abs_err}"


@pytest.mark.slow
def test_package_keeps_answers_and_reports_what_ran(conv_package):
    model, runner, named, expected = conv_package
    _assert_matches_eager(model, runner, named["pixels"])
    info = runner.info()
    assert info["backend"] == "aoti" and info["dynamic_batch"] is True
    assert info["batch_range"] == [1, None] and info["package_batch_range"] == [1, None]  # read from the package
    assert info["dynamic_batch_verified"] is True and "batch 2" in info["dynamic_batch_check"]
    assert info["export_s"] > 0 and info["compile_s"] > 0 and info["package_bytes"] > 0
    assert info["weights_frozen"] is True  # _frozen_param constants: Inductor froze under no_grad
    assert info["package_device"] == "cpu" and info["package_cpu_isa"]
    assert any("convolution" in kernel for kernel in info["extern_kernels"])  # the wrapper's library calls


@pytest.mark.slow
def test_one_package_runs_at_other_batch_sizes(conv_package):
    model, runner, _, _ = conv_package
    for batch in (3, 8):
        assert runner.serves((torch.randn(batch, 3, 8, 8),))  # read from the package's batch range
        _assert_matches_eager(model, runner, torch.randn(batch, 3, 8, 8))
    assert not runner.serves((torch.randn(3, 3, 9, 9),))  # only the batch is dynamic
    assert not runner.serves((torch.randn(3, 3, 8, 8), torch.randn(3, 3, 8, 8)))


@pytest.mark.slow
def test_package_saves_and_loads_without_example_inputs(conv_package, tmp_path):
    model, runner, _, _ = conv_package
    files = runner.save(tmp_path)
    assert files == ["model.pt2"] and (tmp_path / "model.pt2").stat().st_size == runner.info()["package_bytes"]
    ctx = BuildContext((), ["pixels"], ["logits", "features"], tmp_path, 1)
    loaded = Aoti(AotiConfig()).load(tmp_path, files, ctx)
    _assert_matches_eager(model, loaded, torch.randn(5, 3, 8, 8))
    info = loaded.info()
    assert info["loaded_from"] == "model.pt2" and info["package_dynamic_batch"] is True
    assert info["weights_frozen"] is True


@pytest.mark.slow
def test_package_refuses_inputs_of_another_shape(conv_package):
    """The compiled code does not check its inputs; the runner does, from the package's metadata."""
    _, runner, _, _ = conv_package
    with pytest.raises(InputError, match=r"input 0 must be float32\[batch, 3, 8, 8\], got float32\[2, 3, 9, 9\]"):
        runner(torch.randn(2, 3, 9, 9))
    with pytest.raises(InputError, match="takes 1 inputs, got 2"):
        runner(torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8))


def test_a_batch_the_code_fixes_is_exported_static_with_the_reason():
    exported, facts = export_program(FlatIO(BatchBranch(), ["x"], ["output"]), (torch.randn(4, 3),), True)
    assert facts["dynamic_batch"] is False and facts["batch_range"] == [4, 4]
    assert "Constraints violated (batch)" in facts["static_batch_reason"]
    assert exported.module()(torch.ones(4, 3))[0].tolist() == [[2.0] * 3] * 4  # the x + 1 branch


def test_a_dynamic_export_has_the_exporters_batch_range():
    model, x = tiny_mlp(batch=1)
    _, facts = export_program(FlatIO(model, ["x"], ["output"]), (x,), True)
    assert facts == {"dynamic_batch": True, "batch_range": [1, None]}
    _, facts = export_program(FlatIO(model, ["x"], ["output"]), (x,), False)
    assert facts == {"dynamic_batch": False, "batch_range": [1, 1]}


def test_data_dependent_control_flow_is_unsupported_with_the_exporters_reason():
    with pytest.raises(Unsupported, match=r"torch.export failed: .*data-dependent.*if x.sum\(\) > 0"):
        build(RECIPE, ValueBranch(), torch.randn(4, 3))


def test_config_round_trips_and_rejects_unknown_fields():
    config = AotiConfig(dynamic_batch=False, freezing=False)
    assert AotiConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InputError, match="no field"):
        AotiConfig.from_dict({"dynamic": True})


def test_available_names_the_missing_compiler(hardware, monkeypatch):
    import shutil

    assert Aoti.available(hardware, "cpu") is None
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "C++ compiler" in Aoti.available(hardware, "cpu")


def test_proposes_one_recipe(hardware):
    from hone.models.workload import InputSet, Workload

    model, x = tiny_mlp()
    (recipe,) = Aoti.propose(Workload("mlp", model, [InputSet("bs4", {"x": x})]), hardware, "cpu")
    assert recipe.label == "aoti" and recipe.cost == 3.0 and recipe.runtime.config == AotiConfig()
    assert Aoti.consumes == ("torch", "torch-quantized") and "overhead" in Aoti.variants(None, None, "cpu")[0].addresses
