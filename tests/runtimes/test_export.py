"""Every runtime's product saves with a manifest, its example inputs and the outputs they must
give, and loads back through hone.load with the same answers; a changed file or an artifact
that no longer computes what was measured is refused. The winner of a sweep is exported as
the very build its worker measured: nothing is rebuilt."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import hone
from hone import export
from hone._optional import is_available
from hone.config import NoConfig
from hone.errors import HoneError, InputError
from hone.passes.onnx.export import OnnxExportConfig
from hone.runtimes.inductor import InductorConfig
from hone.runtimes.onnxruntime import OnnxRuntimeConfig
from hone.search.recipe import Recipe, Step
from harness import build, this_cpu
from plugins_for_tests import SlowEagerRuntime
from tiny_models import TinyConv, TinyMLP

RECIPES = {
    "eager": Recipe("eager", (), Step("eager", NoConfig()), baseline=True),
    "inductor": Recipe("inductor", (), Step("inductor", InductorConfig())),
    "onnxruntime": Recipe("onnxruntime", (Step("onnx_export", OnnxExportConfig()),), Step("onnxruntime", OnnxRuntimeConfig())),
}
if is_available("openvino"):
    from hone.passes.openvino.convert import OpenVinoConvertConfig
    from hone.runtimes.openvino import OpenVinoConfig

    RECIPES["openvino"] = Recipe("openvino", (Step("openvino_convert", OpenVinoConvertConfig()),), Step("openvino", OpenVinoConfig()))
EXPECTED_FILES = {
    "eager": ["model.pt2"], "inductor": ["model.pt2"], "openvino": ["model.xml", "model.bin"],
    # ORT writes the weights file only for initializers over its size threshold, which the layout
    # its optimizer chose for this CPU decides (none on an AVX2-only EPYC): optional.
    "onnxruntime": ["model.optimized.onnx"],
}
OPTIONAL_FILES = {"onnxruntime": ["model.optimized.onnx.data"]}


def _saved(label: str, where):
    torch.manual_seed(0)
    model = TinyConv().eval()
    runner, _, named, expected = build(RECIPES[label], model, torch.randn(2, 3, 8, 8))
    inputs = tuple(named.values())
    export.save(runner, RECIPES[label], where, input_names=list(named), output_names=list(expected),
                example_inputs=inputs, reference=tuple(expected.values()))
    return runner, inputs


@pytest.mark.parametrize("label", list(RECIPES))
def test_save_and_load_round_trip(label, tmp_path):
    runner, inputs = _saved(label, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    files = manifest["files"]
    assert files[: len(EXPECTED_FILES[label])] == EXPECTED_FILES[label]
    assert set(files[len(EXPECTED_FILES[label]):]) <= set(OPTIONAL_FILES.get(label, []))
    assert all((tmp_path / "out" / name).is_file() for name in files)
    assert manifest["recipe"]["runtime"]["name"] == RECIPES[label].runtime.name
    assert manifest["inputs"] == [{"name": "pixels", "shape": [2, 3, 8, 8], "dtype": "float32"}]
    assert manifest["output_names"] == ["logits", "features"]
    assert [o["name"] for o in manifest["outputs"]] == ["logits", "features"]
    assert all(o["against"] == "reference" and o["atol"] > 0 for o in manifest["outputs"])
    assert set(manifest["checksums"]) == {*files, "examples.safetensors"}
    assert manifest["sha256"] == export.digest(manifest["checksums"])
    loaded = hone.load(tmp_path / "out")  # checks the example inputs' outputs too
    for got, want in zip(loaded(*inputs), runner(*inputs)):
        torch.testing.assert_close(got, want)


def _flip_a_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["model.pt2", "examples.safetensors"])
def test_a_changed_byte_is_refused_and_named(name, tmp_path):
    _saved("eager", tmp_path / "out")
    _flip_a_byte(tmp_path / "out" / name)
    with pytest.raises(InputError, match=f"{name} changed since it was saved"):
        hone.load(tmp_path / "out")
    (tmp_path / "out" / name).unlink()
    with pytest.raises(InputError, match=f"{name} is missing"):
        hone.load(tmp_path / "out")


def test_a_manifest_that_does_not_match_its_files_is_refused(tmp_path):
    _saved("eager", tmp_path / "out")
    path = tmp_path / "out" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="does not match the checksum"):
        hone.load(tmp_path / "out")


def test_outputs_that_miss_the_recorded_ones_are_refused_unless_unchecked(tmp_path):
    from safetensors.torch import load_file, save_file

    runner, inputs = _saved("eager", tmp_path / "out")
    # The recorded outputs moved (as if the artifact computed otherwise here), checksums kept valid.
    examples = tmp_path / "out" / "examples.safetensors"
    tensors = load_file(str(examples))
    tensors["reference.0"] = tensors["reference.0"] + 1.0
    save_file(tensors, str(examples))
    path = tmp_path / "out" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["checksums"]["examples.safetensors"] = export.sha256_of(examples)
    manifest["sha256"] = export.digest(manifest["checksums"])
    path.write_text(json.dumps(manifest))
    with pytest.raises(HoneError, match=r"output 'logits' misses the eager fp32 reference .*max abs err 1"):
        hone.load(tmp_path / "out")
    loaded = hone.load(tmp_path / "out", check=False)
    torch.testing.assert_close(loaded(*inputs)[0], runner(*inputs)[0])


def test_export_refuses_a_directory_with_files_and_load_names_what_is_missing(tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(InputError, match="is not empty"):
        export.save(None, RECIPES["eager"], tmp_path, input_names=[], output_names=[], example_inputs=())
    assert (tmp_path / "keep.txt").read_text() == "user data"
    with pytest.raises(InputError, match="has no manifest.json"):
        hone.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(InputError, match="not a hone artifact"):
        hone.load(tmp_path)


# -- a sweep's winner ----------------------------------------------------------------------------


def _no_build_here(monkeypatch) -> None:
    """Any build in this process fails the test: the winner is loaded, never rebuilt."""
    import hone.search.build as build_module
    from hone.runtimes.base import Runtime

    def refuse(*args, **kwargs):
        raise AssertionError("the winner was rebuilt in the parent process")

    monkeypatch.setattr(Runtime, "build", refuse)
    monkeypatch.setattr(build_module, "build_recipe", refuse)


@pytest.mark.slow
def test_optimize_result_exports_the_winner(tmp_path, monkeypatch):
    from tiny_models import tiny_mlp

    model, x = tiny_mlp()
    result = hone.optimize(model, x, recipes=[RECIPES["onnxruntime"]], store=False, progress=False,
                           measure_time_s=0.3)
    best = result.best[0]
    with monkeypatch.context() as m:
        _no_build_here(m)
        where = result.export(tmp_path / "best")
        loaded = hone.load(where)
        runner = result.runner()
    manifest = export.read_manifest(where)
    assert manifest["recipe"]["label"] == result.selection.best.label
    assert manifest["sha256"] == best.artifact["sha256"] and manifest["input_set"] == best.input_set
    assert manifest["p50_s"] == {best.input_set: best.measurement.p50}
    torch.testing.assert_close(loaded(x)[0], model(x))
    torch.testing.assert_close(runner(x)[0], model(x))
    # Every other recipe's artifact was deleted once the winner was known.
    for r in result.results:
        if r.recipe.key != result.selection.best.key and r.artifact and r.artifact.get("dir"):
            assert not Path(r.artifact["dir"]).exists()


def _proposed(label: str, workload) -> Recipe:
    from hone.registry import PASSES, RUNTIMES

    hw = this_cpu()
    for cls in [*PASSES, *RUNTIMES]:
        for recipe in cls.propose(workload, hw, "cpu"):
            if recipe.label == label:
                return recipe
    raise LookupError(f"nothing proposes {label} here")


@pytest.mark.slow
def test_a_static_int8_winner_exports_the_build_that_was_measured(tmp_path, monkeypatch):
    """The exported artifact is calibrated on the workload's calibration set, as measured (a
    rebuild from the example inputs would calibrate on those), carries the stored checksum, is
    refused once a byte changes, and loading it builds nothing."""
    pytest.importorskip("onnxruntime")
    from hone.models.workload import EvalSet, InputSet, Workload
    from hone.store import Store

    torch.manual_seed(0)
    model = TinyMLP().eval()
    x = torch.randn(8, 32)
    calibration = torch.randn(64, 32) * 4.0  # a wider range than the example inputs': other scales
    eval_x = torch.randn(256, 32)
    with torch.no_grad():
        labels = model(eval_x).argmax(-1)
    recipe = _proposed("ort-int8-static", Workload("tiny", model, [InputSet("bs8", {"x": x})]))
    db = tmp_path / "runs.db"
    # A control 2 ms slower than eager: int8 wins whatever this CPU's int8 speed.
    result = hone.optimize(model, x, eval=EvalSet({"x": eval_x}, "top1", labels=labels), calibration=calibration,
                           recipes=[SlowEagerRuntime.recipe(), recipe], accuracy_budget=0.5, store=db, progress=False,
                           measure_time_s=0.5)
    assert result.selection.best is not None and result.selection.best.label == "ort-int8-static", result.table()
    best = result.best[0]
    with Store(db) as store:
        stored = store.load_run(result.run.run_id).best[0].artifact
    assert stored == best.artifact and len(stored["sha256"]) == 64

    with monkeypatch.context() as m:
        _no_build_here(m)
        where = result.export(tmp_path / "out")
        exported = hone.load(where)
        runner = result.runner()
    manifest = export.read_manifest(where)
    assert manifest["sha256"] == stored["sha256"]
    # A load is held to eager's outputs where the tensor check passed, else (int8: the task
    # metric decided) to the outputs the build gave, with the verdict's own tolerances.
    checks = best.verdict.outputs
    assert [o["against"] for o in manifest["outputs"]] == ["reference" if c.passed else "measured" for c in checks]
    assert [(o["atol"], o["rtol"]) for o in manifest["outputs"]] == [(c.atol, c.rtol) for c in checks]

    # Calibrated on the calibration set: the same outputs as a build calibrated on it, unlike one
    # calibrated on the example inputs (what rebuilding from them would have done).
    threads = result.run.threads
    on_set, *_ = build(recipe, model, x, threads=threads, calibration=(calibration,))
    on_examples, *_ = build(recipe, model, x, threads=threads)
    got = exported(x)[0]
    off_set = float((got - on_set(x)[0]).abs().mean())
    off_examples = float((got - on_examples(x)[0]).abs().mean())
    assert off_examples > 0 and off_set < off_examples / 10, (off_set, off_examples)
    torch.testing.assert_close(runner(x)[0], got)

    # One byte changed: refused, naming the file.
    tampered = tmp_path / "tampered"
    shutil.copytree(where, tampered)
    name = export.read_manifest(where)["files"][0]
    _flip_a_byte(tampered / name)
    with pytest.raises(InputError, match=f"{name} changed since it was saved"):
        hone.load(tampered)
