"""Guarantee: a broken or hostile model file is one clear error (exit 2, one line, no traceback,
nothing stored), refused before any library that trusts it reads it: random bytes under every
extension hone reads, truncated ONNX and torch.export files, safetensors headers that lie about
their size. (Pickles that run code and ONNX external data outside the folder: tests/models.)"""

from __future__ import annotations

import json
import os
import random
import struct
from pathlib import Path

import pytest
import torch

from hone._optional import is_available
from hone.cli.app import main
from tiny_models import tiny_mlp

SUFFIXES = [".onnx", ".pt2", ".jit", ".torchscript", ".pt", ".pth", ".bin", ".pkl"]


def _optimize(capsys, *args: str) -> tuple[int, str]:
    rc = main(["optimize", *args, "--time-budget", "60"])
    return rc, capsys.readouterr().err.strip()


def _assert_one_clear_error(rc: int, err: str, *fragments: str) -> None:
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    assert not Path(os.environ["HONE_DB"]).exists()  # refused before a run was recorded


def _random_bytes(size: int = 4096) -> bytes:
    return random.Random(size).randbytes(size)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("trust", [False, True], ids=["untrusted", "trust-pickle"])
def test_random_bytes_under_each_extension(tmp_path, capsys, suffix, trust):
    if suffix == ".onnx" and not is_available("onnx"):
        pytest.skip("requires onnx (pip install 'hone[onnx]')")
    path = tmp_path / f"model{suffix}"
    path.write_bytes(_random_bytes())
    rc, err = _optimize(capsys, str(path), *(["--trust-pickle"] if trust else []))
    _assert_one_clear_error(rc, err, path.name)


def test_random_bytes_as_a_factory_file(tmp_path, capsys):
    path = tmp_path / "model.py"
    path.write_bytes(_random_bytes())
    rc, err = _optimize(capsys, f"{path}:make")
    _assert_one_clear_error(rc, err, "model.py")


def _truncated(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_truncated_torch_export_program(tmp_path, capsys):
    model, x = tiny_mlp()
    path = tmp_path / "program.pt2"
    torch.export.save(torch.export.export(model, (x,)), str(path))
    rc, err = _optimize(capsys, str(_truncated(path)))
    _assert_one_clear_error(rc, err, "program.pt2")


@pytest.mark.skipif(not is_available("onnx"), reason="requires onnx (pip install 'hone[onnx]')")
def test_a_truncated_onnx_graph(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(torch.randn(32, 4).numpy(), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [weight])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    rc, err = _optimize(capsys, str(_truncated(path)))
    _assert_one_clear_error(rc, err, "model.onnx")


def _folder_with_weights(tmp_path: Path, weights: bytes) -> Path:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "bert", "architectures": ["BertModel"], "hidden_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 100, "max_position_embeddings": 64}))
    (folder / "model.safetensors").write_bytes(weights)
    return folder


@pytest.mark.parametrize("header_length, says", [
    (1 << 40, "header of 1099511627776 bytes"),  # a terabyte: read as told, an out-of-memory
    (10_000, "larger than the file"),
], ids=["absurd", "beyond-the-file"])
def test_a_safetensors_header_that_lies_about_its_size(tmp_path, capsys, header_length, says):
    folder = _folder_with_weights(tmp_path, struct.pack("<Q", header_length) + b'{"a": 1}')
    rc, err = _optimize(capsys, str(folder))
    _assert_one_clear_error(rc, err, "model.safetensors", says)


def test_safetensors_offsets_beyond_the_data(tmp_path, capsys):
    header = json.dumps({"w": {"dtype": "F32", "shape": [1024, 1024], "data_offsets": [0, 4 * 1024 * 1024]}}).encode()
    folder = _folder_with_weights(tmp_path, struct.pack("<Q", len(header)) + header + b"\0" * 64)
    rc, err = _optimize(capsys, str(folder))
    _assert_one_clear_error(rc, err, "model.safetensors")
