"""`hone bench ARTIFACT` on each kind of artifact: an export directory of a real run, and a bare
.onnx, .pt2 and OpenVINO .xml written here; a bad file is one clear error."""

from __future__ import annotations

import json

import pytest
import torch

from hone._optional import is_available
from hone.cli.app import main
from tiny_models import TinyMLP

FAST = ["--measure-time", "0.2"]
needs_ort = pytest.mark.skipif(not is_available("onnxruntime"), reason="requires onnxruntime (hone[onnx])")


class TokenPool(torch.nn.Module):
    """Token ids and a mask, both integer, with a dynamic batch and sequence length."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(100, 8)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).float()
        return (self.embed(input_ids) * mask).sum(1) / mask.sum(1)


def _bench(capsys, *args) -> tuple[int, dict | str, str]:
    rc = main(["bench", *map(str, args), *FAST])
    out = capsys.readouterr()
    return rc, json.loads(out.out) if "--json" in args and rc == 0 else out.out, out.err


def _mlp() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return TinyMLP().eval(), torch.randn(4, 32)


def _assert_measured(rows: list[dict], expected: list[tuple[int, int]]) -> None:
    assert [(r["batch_size"], r["threads"]) for r in rows] == expected
    for r in rows:
        assert "skipped" not in r, r
        assert 0 < r["p50_s"] <= r["p90_s"] <= r["p99_s"] and r["n"] >= 10
        assert r["throughput_per_s"] == pytest.approx(r["batch_size"] / r["p50_s"])
        assert r["peak_rss_bytes"] > 0


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """A real run's winner (eager only: the cheapest run there is), exported."""
    import hone

    root = tmp_path_factory.mktemp("bench")
    model, x = _mlp()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HONE_CACHE_DIR", str(root / "cache"))
        result = hone.optimize(model, x, store=False, progress=False, measure_time_s=0.3, recipes=[], profile_first=False)
    return result.export(root / "out")


def test_an_export_directory_at_each_batch_size_and_thread_count(export_dir, capsys):
    rc, report, err = _bench(capsys, export_dir, "--batch-sizes", "1,8", "--threads", "1,2", "--json")
    assert rc == 0, err
    assert report["kind"] == "export" and report["inputs"] == [{"name": "x", "shape": [4, 32], "dtype": "float32"}]
    _assert_measured(report["rows"], [(1, 1), (8, 1), (1, 2), (8, 2)])
    rc, table, _ = _bench(capsys, export_dir)  # default: the examples' batch, the recorded threads
    assert rc == 0 and f"{export_dir} (export)" in table and "p50" in table and "peak RSS" in table


def test_an_export_without_batch_axes_runs_only_its_examples_batch(export_dir, tmp_path, capsys):
    import shutil

    directory = shutil.copytree(export_dir, tmp_path / "old")
    manifest = json.loads((directory / "manifest.json").read_text())
    del manifest["batch_axes"]  # as an older hone wrote it
    (directory / "manifest.json").write_text(json.dumps(manifest))
    rc, report, err = _bench(capsys, directory, "--batch-sizes", "4,8", "--threads", "1", "--json")
    assert rc == 0, err
    measured, skipped = report["rows"]
    _assert_measured([measured], [(4, 1)])
    assert skipped["skipped"].startswith("the manifest records no batch axes; its examples are at batch 4")
    rc, _, err = _bench(capsys, directory, "--batch-sizes", "8")
    assert rc == 1 and "no row ran" in err


@needs_ort
def test_a_bare_onnx_file(tmp_path, capsys):
    model, x = _mlp()
    dynamic, fixed = tmp_path / "dynamic.onnx", tmp_path / "fixed.onnx"
    torch.onnx.export(model, (x,), str(dynamic), input_names=["x"], dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    torch.onnx.export(model, (x,), str(fixed), input_names=["x"], dynamo=False)
    rc, report, err = _bench(capsys, dynamic, "--batch-sizes", "1,8", "--threads", "1", "--json")
    assert rc == 0, err
    assert report["kind"] == "onnx" and report["inputs"] == [{"name": "x", "shape": [None, 32], "dtype": "float32"}]
    _assert_measured(report["rows"], [(1, 1), (8, 1)])
    rc, report, err = _bench(capsys, fixed, "--batch-sizes", "4,8", "--threads", "1", "--json")
    assert rc == 0, err
    _assert_measured(report["rows"][:1], [(4, 1)])
    assert report["rows"][1] == {"batch_size": 8, "threads": 1, "skipped": "x has a fixed batch of 4"}


@needs_ort
def test_dynamic_dimensions_take_input_shapes_or_a_default_with_a_warning(tmp_path, capsys):
    path = tmp_path / "tokens.onnx"
    ids = torch.randint(0, 100, (2, 16))
    torch.onnx.export(TokenPool().eval(), (ids, torch.ones_like(ids)), str(path), input_names=["input_ids", "attention_mask"],
                      dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}}, dynamo=False)
    rc, report, err = _bench(capsys, path, "--threads", "1", "--json")
    assert rc == 0, err
    assert report["inputs"][0] == {"name": "input_ids", "shape": [None, None], "dtype": "int64"}
    assert "warning: input_ids: dynamic dimension 1 set to 128 (--input-shape input_ids=... to choose)" in err
    _assert_measured(report["rows"], [(1, 1)])
    rc, report, err = _bench(capsys, path, "--threads", "1", "--input-shape", "input_ids=2x16,attention_mask=2x16",
                             "--json")
    assert rc == 0 and "warning" not in err
    _assert_measured(report["rows"], [(2, 1)])  # the batch of the shapes given
    rc, _, err = _bench(capsys, path, "--input-shape", "input_ids=2x16x3")
    assert rc == 2 and "does not fit the declared ?x?" in err
    rc, _, err = _bench(capsys, path, "--input-shape", "token_ids=2x16")
    assert rc == 2 and "names token_ids, which" in err


def test_a_torch_export_program(tmp_path, capsys):
    model, x = _mlp()
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(tmp_path / "model.pt2"))
    rc, report, err = _bench(capsys, tmp_path / "model.pt2", "--batch-sizes", "2,8", "--threads", "1", "--json")
    assert rc == 0, err
    assert report["kind"] == "pt2" and report["inputs"] == [{"name": "x", "shape": [None, 32], "dtype": "float32"}]
    _assert_measured(report["rows"], [(2, 1), (8, 1)])


@pytest.mark.skipif(not is_available("openvino"), reason="requires openvino (hone[openvino])")
def test_an_openvino_ir(tmp_path, capsys):
    import openvino

    model, x = _mlp()
    openvino.save_model(openvino.convert_model(model, example_input=x, input=[("x", [-1, 32])]), str(tmp_path / "m.xml"))
    rc, report, err = _bench(capsys, tmp_path / "m.xml", "--batch-sizes", "1,8", "--threads", "1", "--json")
    assert rc == 0, err
    assert report["kind"] == "openvino" and report["inputs"] == [{"name": "x", "shape": [None, 32], "dtype": "float32"}]
    _assert_measured(report["rows"], [(1, 1), (8, 1)])
    (tmp_path / "m.bin").unlink()
    rc, _, err = _bench(capsys, tmp_path / "m.xml")
    assert rc == 2 and "its weights m.bin are not beside it" in err


@pytest.mark.parametrize("name, says", [
    ("model.onnx", "not a readable ONNX model"),
    ("model.pt2", "is not a torch.export program"),
    ("model.xml", "is not an OpenVINO IR"),
    ("model.tflite", "not an artifact hone can time"),
    ("absent.onnx", "does not exist"),
])
def test_a_bad_file_is_one_clear_error(tmp_path, capsys, name, says):
    if name.endswith(".onnx") and not is_available("onnxruntime"):
        pytest.skip("requires onnxruntime (hone[onnx])")
    if name.endswith(".xml") and not is_available("openvino"):
        pytest.skip("requires openvino (hone[openvino])")
    if not name.startswith("absent"):
        (tmp_path / name).write_bytes(b"not a model\n")
    rc, _, err = _bench(capsys, tmp_path / name)
    lines = err.strip().splitlines()
    assert rc == 2 and says in err
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:] and "Traceback" not in err
