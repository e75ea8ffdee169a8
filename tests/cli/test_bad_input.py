"""Each kind of bad input: one clear line on stderr, exit code 2, no traceback, nothing stored."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from hone.cli.app import main
from skips import REQUIRES_NO_CUDA


def _run(capsys, *args):
    rc = main(["optimize", *args])
    captured = capsys.readouterr()
    return rc, captured.err.strip()


def _assert_one_clear_line(rc, err, *fragments):
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    assert not Path(os.environ["HONE_DB"]).exists()  # nothing half-written


def _factory(tmp_path, body: str) -> str:
    path = tmp_path / "user_model.py"
    path.write_text("import torch\n" + textwrap.dedent(body))
    return f"{path}:make"


def test_unknown_model(capsys):
    rc, err = _run(capsys, "no-such-model")
    _assert_one_clear_line(rc, err, "unknown model 'no-such-model'", "minilm")


def test_missing_file(capsys, tmp_path):
    rc, err = _run(capsys, f"{tmp_path}/absent.py:make")
    _assert_one_clear_line(rc, err, "absent.py")


def test_factory_that_raises(capsys, tmp_path):
    spec = _factory(tmp_path, "def make():\n    raise ValueError('no weights here')\n")
    rc, err = _run(capsys, spec)
    _assert_one_clear_line(rc, err, "ValueError", "no weights here")


def test_inputs_of_the_wrong_shape(capsys, tmp_path):
    spec = _factory(tmp_path, "def make():\n    return torch.nn.Linear(32, 4), torch.randn(2, 16)\n")
    rc, err = _run(capsys, spec)
    _assert_one_clear_line(rc, err, "forward raised", "float32[2, 16]")


def test_inputs_of_the_wrong_dtype(capsys, tmp_path):
    spec = _factory(tmp_path, "def make():\n    return torch.nn.Linear(32, 4), torch.ones(2, 32, dtype=torch.int64)\n")
    rc, err = _run(capsys, spec)
    _assert_one_clear_line(rc, err, "forward raised", "int64[2, 32]")


def test_a_forward_that_raises(capsys, tmp_path):
    spec = _factory(tmp_path, """
        class Broken(torch.nn.Module):
            def forward(self, x):
                raise RuntimeError("kernel exploded")
        def make():
            return Broken(), torch.randn(2, 3)
    """)
    rc, err = _run(capsys, spec)
    _assert_one_clear_line(rc, err, "RuntimeError", "kernel exploded")


def test_bad_batch_sizes(capsys):
    rc, err = _run(capsys, "digits-cnn", "--batch-sizes", "0,8")
    _assert_one_clear_line(rc, err, "--batch-sizes")


def test_unknown_recipe_label(capsys, tmp_path):
    spec = _factory(tmp_path, "def make():\n    return torch.nn.Linear(4, 2), torch.randn(2, 4)\n")
    rc, err = _run(capsys, spec, "--only", "warp-drive")
    _assert_one_clear_line(rc, err, "no recipe named 'warp-drive'")


def test_usage_error_exits_2(capsys):
    assert main(["optimize", "--no-such-flag"]) == 2


def test_debug_shows_the_traceback(tmp_path):
    from hone.errors import InputError

    with pytest.raises(InputError):
        main(["--debug", "optimize", "no-such-model"])


def test_cuda_requested_without_a_gpu(capsys, hardware):
    if hardware.has_cuda:
        pytest.skip(REQUIRES_NO_CUDA)
    rc, err = _run(capsys, "digits-cnn", "--device", "cuda")
    _assert_one_clear_line(rc, err, "no CUDA device")


def test_unknown_device(capsys):
    rc, err = _run(capsys, "digits-cnn", "--device", "tpu")
    _assert_one_clear_line(rc, err, "unknown device 'tpu'")
