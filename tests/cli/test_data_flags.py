"""`hone optimize MODEL --calibration FILE --eval FILE [--metric NAME]`: the run uses the
files' data, says so in the store and the report, and a bad file stops it before any work."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from hone.cli.app import main

FACTORY = """
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = torch.nn.Linear(16, 32)
        self.fc2 = torch.nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def make():
    return Net().eval(), torch.randn(8, 16)
"""


@pytest.fixture
def factory(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(textwrap.dedent(FACTORY))
    return path


def _model(factory: Path) -> torch.nn.Module:
    from hone.models import load_model

    return load_model(f"{factory}:make").module


def _data(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)


def _optimize(capsys, *args) -> tuple[int, str, str]:
    rc = main(["optimize", *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.slow
def test_calibration_and_eval_files_drive_the_run_and_are_recorded(capsys, tmp_path, factory):
    pytest.importorskip("onnxruntime")
    from hone.store import Store

    eval_x = _data(96, seed=1)
    labels = np.random.default_rng(2).integers(0, 4, 96)  # not the model's answers: fp32 scores below 1
    np.savez(tmp_path / "calib.npz", x=_data(64, seed=3))
    np.savez(tmp_path / "eval.npz", x=eval_x, labels=labels)
    with torch.no_grad():
        expected = float((_model(factory)(torch.from_numpy(eval_x)).argmax(-1) == torch.from_numpy(labels)).float().mean())
    db = tmp_path / "runs.db"
    rc, out, err = _optimize(capsys, f"{factory}:make", "--calibration", str(tmp_path / "calib.npz"),
                             "--eval", str(tmp_path / "eval.npz"), "--recipe", "ort-int8-static",
                             "--measure-time", "0.3", "--fallback-attempts", "0", "--db", str(db), "--json")
    assert rc == 0, err
    run = json.loads(out)
    assert run["run"]["eval_metric"] == "top1"  # labels in the file, no --metric
    assert run["run"]["reference_scores"]["eval"] == pytest.approx(expected)
    assert not any("no calibration set" in w for w in run["run"]["warnings"])  # calibrated on the file
    int8 = next(c for c in run["candidates"] if c["recipe"]["label"] == "ort-int8-static")
    assert int8["status"] in ("ok", "wrong_answer"), int8["reason"]  # built, calibrated and judged
    assert int8["verdict"]["metric"]["name"] == "top1"

    with Store(db) as store:
        stored = store.load_run(run["run"]["run_id"]).run.provenance
    assert stored["calibration_file"]["path"] == str(tmp_path / "calib.npz")
    assert stored["calibration_file"]["samples"] == 64 and stored["eval_file"]["samples"] == 96
    assert len(stored["eval_file"]["sha256"]) == 64
    rc = main(["report", "--db", str(db)])  # the console report, re-rendered from the store
    shown = " ".join(capsys.readouterr().out.split())  # a long path wraps the line
    assert rc == 0
    assert "calibration data: " in shown and "calib.npz (64 samples" in shown
    assert "eval data: " in shown and "eval.npz (96 samples" in shown


@pytest.mark.slow
def test_a_safetensors_eval_file_without_labels_and_a_metric(capsys, tmp_path, factory):
    from safetensors.torch import save_file

    save_file({"x": torch.from_numpy(_data(40, seed=4))}, str(tmp_path / "eval.safetensors"))
    rc, out, err = _optimize(capsys, f"{factory}:make", "--eval", str(tmp_path / "eval.safetensors"),
                             "--metric", "top1_agreement", "--only", "eager", "--no-profile",
                             "--measure-time", "0.3", "--db", str(tmp_path / "runs.db"), "--json")
    assert rc == 0, err
    run = json.loads(out)["run"]
    assert run["eval_metric"] == "top1_agreement" and run["reference_scores"]["eval"] == 1.0  # fp32 agrees with itself
    assert run["provenance"]["eval_file"]["samples"] == 40 and "calibration_file" not in run["provenance"]


@pytest.mark.parametrize("flag, write, fragments", [
    ("--eval", lambda d: np.savez(d / "e.npz", x=_data(8, 0), labels=np.zeros(7, np.int64)), ["e.npz", "8 samples but 7 labels"]),
    ("--calibration", lambda d: np.savez(d / "e.npz", inputs=_data(8, 0)), ["e.npz", "no array 'x'", "unexpected array 'inputs'"]),
    ("--calibration", lambda d: np.savez(d / "e.npz", x=_data(8, 0).astype(np.float16)), ["e.npz", "torch.float16"]),
    ("--eval", lambda d: (d / "e.npz").write_bytes(b""), ["e.npz", "empty"]),
], ids=["labels", "names", "dtype", "empty"])
def test_a_bad_data_file_is_one_line_and_exit_2(capsys, tmp_path, factory, flag, write, fragments):
    write(tmp_path)
    rc, _, err = _optimize(capsys, f"{factory}:make", flag, str(tmp_path / "e.npz"))
    err = err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    assert not Path(os.environ["HONE_DB"]).exists()  # nothing stored


def test_an_unknown_metric_is_refused(capsys, tmp_path, factory):
    np.savez(tmp_path / "e.npz", x=_data(8, 0))
    rc, _, err = _optimize(capsys, f"{factory}:make", "--eval", str(tmp_path / "e.npz"), "--metric", "accuracy")
    assert rc == 2 and "unknown metric 'accuracy'" in err and "top1_agreement" in err
    assert not Path(os.environ["HONE_DB"]).exists()
