"""`hone optimize model.jit` (or a .pt saved by torch.jit.save): a TorchScript archive as the
workload. It is told from a pickle without unpickling anything, needs --input-shape, and gets
exactly the steps that take a ScriptModule."""

from __future__ import annotations

import copy
import importlib.util
import pickle
from pathlib import Path

import pytest
import torch

from hone.errors import InputError, UnsafeModel
from hone.models import load_model
from hone.models.torchscript_file import is_torchscript_archive
from tiny_models import TinyConv, TinyMLP

# The formats a recipe of a TorchScript archive may hand its steps: never "torch", which
# torch.export, Dynamo and the torch-level passes take.
SCRIPT_FORMATS = {"torchscript", "onnx", "openvino"}


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, Path]:
    """A scripted TinyConv (it returns a dict) as .jit, a traced TinyMLP as .pt, and a plain
    torch.save'd state dict as .pt (a pickle)."""
    folder = tmp_path_factory.mktemp("torchscript")
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(TinyConv().eval()), str(folder / "conv.jit"))
    torch.jit.save(torch.jit.trace(TinyMLP().eval(), torch.randn(2, 32)), str(folder / "mlp.pt"))
    torch.save(TinyMLP().state_dict(), folder / "weights.pt")
    return {"script": folder / "conv.jit", "trace": folder / "mlp.pt", "pickle": folder / "weights.pt"}


def test_an_archive_is_told_from_a_pickle_by_its_entries(archives, tmp_path):
    assert is_torchscript_archive(archives["script"]) and is_torchscript_archive(archives["trace"])
    assert not is_torchscript_archive(archives["pickle"])  # torch.save's zip: data.pkl, no code/
    (tmp_path / "text.jit").write_text("not a zip")
    assert not is_torchscript_archive(tmp_path / "text.jit")
    with pytest.raises(UnsafeModel, match="pickle"):  # the existing rule for pickles stands
        load_model(str(archives["pickle"]))
    with pytest.raises(InputError, match="not a TorchScript archive"):
        load_model(str(tmp_path / "text.jit"))


@pytest.mark.parametrize("case, argument", [("script", "pixels"), ("trace", "x")])
def test_without_input_shape_the_error_names_forwards_arguments(archives, case, argument):
    with pytest.raises(InputError, match=f"records no input shapes.*forward's {argument}") as err:
        load_model(str(archives[case]))
    assert f"--input-shape {argument}=" in err.value.hint


def test_an_archive_loads_with_the_given_shapes_and_pickles_as_its_bytes(archives):
    workload = load_model(str(archives["trace"]), input_shapes=["x=2x32"], batch_sizes=(1, 3))
    assert workload.source_format == "torchscript"
    assert [[str(t) for t in s.specs()] for s in workload.input_sets] == [["x: float32[1, 32]"], ["x: float32[3, 32]"]]
    assert workload.provenance["format"] == "torchscript" and "Tensor x" in workload.provenance["forward"]
    x = workload.input_sets[1].tensors["x"]
    out = workload.module(x)
    for clone in (pickle.loads(pickle.dumps(workload.module)), copy.deepcopy(workload.module)):
        assert torch.equal(clone(x), out)
    with pytest.raises(InputError, match="forward takes"):
        load_model(str(archives["trace"]), input_shapes=["x=2x32", "y=2x3"])


@pytest.mark.parametrize("case, shape", [("script", "pixels=2x3x8x8"), ("trace", "x=2x32")])
def test_only_the_steps_that_take_a_script_module_are_composed(archives, case, shape):
    from hone.api import list_recipes
    from hone.registry import PASSES, RUNTIMES

    planned = {p.recipe.label: p.recipe for p in list_recipes(str(archives[case]), input_shapes=[shape])}
    baseline = [r for r in planned.values() if r.baseline]
    assert [(r.label, r.runtime.name) for r in baseline] == [("eager", "eager")]
    assert {"torchscript-frozen", "onnxruntime", "openvino"} <= set(planned)
    assert [s.name for s in planned["onnxruntime"].passes] == ["torchscript_onnx_export"]
    for recipe in planned.values():
        fmt = "torchscript"
        for step in recipe.passes:
            cls = PASSES.get(step.name)
            assert fmt in cls.consumes, (recipe.label, step.name)
            fmt = cls.produces
            assert fmt in SCRIPT_FORMATS, (recipe.label, step.name, fmt)
        assert fmt in RUNTIMES.get(recipe.runtime.name).consumes
    assert not {"inductor", "aoti", "pt2e-int8", "torchscript-trace", "channels-last"} & set(planned)


def test_the_cli_lists_an_archives_recipes(archives, capsys):
    from hone.cli.app import main

    rc = main(["optimize", str(archives["script"]), "--list-recipes", "--input-shape", "pixels=1x3x8x8"])
    out = capsys.readouterr().out
    assert rc == 0
    labels = {line.split()[0] for line in out.splitlines() if "(cost" in line}
    assert {"eager", "torchscript-frozen", "onnxruntime"} <= labels and "inductor" not in labels


@pytest.mark.slow  # four workers at two batch sizes: about 20 s on two cores
def test_a_scripted_archive_optimizes_on_its_steps(archives, tmp_path):
    """The scripted TinyConv returns a dict: the ONNX and OpenVINO paths must flatten it."""
    import hone

    recipes = ["torchscript-frozen", "onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])
    result = hone.optimize(str(archives["script"]), input_shapes=["pixels=1x3x8x8"], batch_sizes=(1, 2),
                           recipes=recipes, measure_time_s=0.3, store=tmp_path / "hone.db", progress=False)
    by = {(r.recipe.label, r.input_set): r for r in result.results}
    assert set(by) == {(label, s) for label in ["eager", *recipes] for s in ("bs1", "bs2")}
    for (label, input_set), r in by.items():
        assert r.status.value == "ok", (label, input_set, r.reason)
    assert by[("torchscript-frozen", "bs1")].runner_info["applied"] == ["script", "freeze", "optimize_for_inference"]
    assert by[("onnxruntime", "bs1")].recipe.passes[0].name == "torchscript_onnx_export"
    assert result.run.provenance["format"] == "torchscript"
