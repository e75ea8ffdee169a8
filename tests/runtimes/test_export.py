"""Every runtime's product saves with a manifest and loads back through hone.load with the
same answers; the manifest is JSON and names the runtime, config and I/O."""

from __future__ import annotations

import json

import pytest
import torch

import hone
from hone import export
from hone._optional import is_available
from hone.config import NoConfig
from hone.errors import InputError
from hone.passes.onnx.export import OnnxExportConfig
from hone.runtimes.inductor import InductorConfig
from hone.runtimes.onnxruntime import OnnxRuntimeConfig
from hone.search.recipe import Recipe, Step
from harness import build
from tiny_models import TinyConv

RECIPES = {
    "eager": Recipe("eager", (), Step("eager", NoConfig())),
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


@pytest.mark.parametrize("label", list(RECIPES))
def test_save_and_load_round_trip(label, tmp_path):
    torch.manual_seed(0)
    runner, _, named, expected = build(RECIPES[label], TinyConv().eval(), torch.randn(2, 3, 8, 8))
    inputs = tuple(named.values())
    export.save(runner, RECIPES[label], tmp_path / "out", input_names=list(named), output_names=list(expected),
                example_inputs=inputs)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    files = manifest["files"]
    assert files[: len(EXPECTED_FILES[label])] == EXPECTED_FILES[label]
    assert set(files[len(EXPECTED_FILES[label]):]) <= set(OPTIONAL_FILES.get(label, []))
    assert all((tmp_path / "out" / name).is_file() for name in files)
    assert manifest["recipe"]["runtime"]["name"] == RECIPES[label].runtime.name
    assert manifest["inputs"] == [{"shape": [2, 3, 8, 8], "dtype": "float32"}]
    assert manifest["output_names"] == ["logits", "features"]
    loaded = hone.load(tmp_path / "out")
    for got, want in zip(loaded(*inputs), runner(*inputs)):
        torch.testing.assert_close(got, want)


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


@pytest.mark.slow
def test_optimize_result_exports_the_winner(tmp_path):
    from tiny_models import tiny_mlp

    model, x = tiny_mlp()
    result = hone.optimize(model, x, recipes=[RECIPES["onnxruntime"]], store=False, progress=False,
                           measure_time_s=0.3)
    where = result.export(tmp_path / "best")
    manifest = export.read_manifest(where)
    assert manifest["recipe"]["label"] == result.selection.best.label
    torch.testing.assert_close(hone.load(where)(x)[0], model(x))
