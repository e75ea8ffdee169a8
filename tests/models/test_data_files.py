"""Calibration and eval data from .npz / .safetensors files, and a factory's calibration and
train sets: what is read, what is recorded, and each bad file refused before any work."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
import torch

import hone
from hone.errors import InputError
from hone.models import load_model
from hone.models.data_files import attach_calibration_file, attach_eval_file, attach_metric
from hone.models.workload import EvalSet, InputSet, Workload


class CountingModel(torch.nn.Module):
    """Two inputs, so names matter; counts forward calls, so "before any work" is checkable."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 3)
        self.calls = 0

    def forward(self, x, mask):
        self.calls += 1
        return self.fc(x) * mask


def _workload(model: torch.nn.Module | None = None) -> Workload:
    example = {"x": torch.randn(4, 8), "mask": torch.ones(4, 1)}
    return Workload("counting", model or CountingModel().eval(), [InputSet("bs4", example)])


def _arrays(n: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((n, 8)).astype(np.float32), "mask": np.ones((n, 1), np.float32)}


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_an_npz_calibration_file_is_read_named_and_recorded(tmp_path):
    arrays = _arrays(16)
    path = _npz(tmp_path / "calib.npz", **arrays)
    workload = _workload()
    attach_calibration_file(workload, path)
    assert list(workload.calibration) == ["x", "mask"]  # the inputs' order, whatever the file's
    assert np.array_equal(workload.calibration["x"].numpy(), arrays["x"])
    assert "calib.npz" in workload.calibration_description and "16 samples" in workload.calibration_description
    recorded = workload.provenance["calibration_file"]
    assert recorded == {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "samples": 16}
    samples, warning = workload.calibration_samples(8)
    assert warning is None and torch.equal(samples[0], torch.from_numpy(arrays["x"][:8]))


def test_a_safetensors_eval_file_with_labels_is_judged_by_top1(tmp_path):
    from safetensors.torch import save_file

    tensors = {k: torch.from_numpy(v) for k, v in _arrays(12).items()}
    labels = torch.arange(12) % 3
    path = tmp_path / "eval.safetensors"
    save_file({**tensors, "labels": labels}, str(path))
    workload = _workload()
    attach_eval_file(workload, path)
    assert workload.eval.metric == "top1" and torch.equal(workload.eval.labels, labels)
    assert torch.equal(workload.eval.samples["x"], tensors["x"]) and len(workload.eval) == 12
    assert "eval.safetensors" in workload.eval.description and "12 samples" in workload.eval.description
    assert workload.provenance["eval_file"]["samples"] == 12


def test_the_metric_of_an_eval_file(tmp_path):
    unlabelled = _npz(tmp_path / "plain.npz", **_arrays(6))
    workload = _workload()
    attach_eval_file(workload, unlabelled)
    assert workload.eval.metric == "embedding_cosine" and workload.eval.labels is None  # compares with fp32
    attach_eval_file(workload, unlabelled, "top1_agreement")
    assert workload.eval.metric == "top1_agreement"
    with pytest.raises(InputError, match="unknown metric 'f1'.*top1"):
        attach_eval_file(workload, unlabelled, "f1")
    with pytest.raises(InputError, match="metric top1 needs labels"):
        attach_eval_file(workload, unlabelled, "top1")


def test_a_metric_alone_judges_the_models_own_eval_set():
    workload = _workload()
    with pytest.raises(InputError, match="no eval set"):
        attach_metric(workload, "embedding_cosine")
    workload.eval = EvalSet({"x": torch.randn(5, 8), "mask": torch.ones(5, 1)}, "top1", labels=torch.zeros(5, dtype=torch.long))
    attach_metric(workload, "top1_agreement")
    assert workload.eval.metric == "top1_agreement" and len(workload.eval) == 5


def test_an_input_named_labels_is_an_input(tmp_path):
    class Tagger(torch.nn.Module):
        def forward(self, x, labels):
            return x + labels

    workload = Workload("t", Tagger(), [InputSet("bs2", {"x": torch.zeros(2, 3), "labels": torch.zeros(2, 3)})])
    path = _npz(tmp_path / "data.npz", x=np.zeros((5, 3), np.float32), labels=np.ones((5, 3), np.float32))
    attach_eval_file(workload, path)
    assert workload.eval.labels is None and torch.equal(workload.eval.samples["labels"], torch.ones(5, 3))


def _bad_files():
    """(name, how to write it into a folder, the eval flag or calibration, fragments of the error)."""
    good = _arrays(8)
    labels = np.arange(8) % 3

    def npz(name, **arrays):
        return lambda d: _npz(d / name, **arrays)

    def raw(name, data: bytes):
        def write(d):
            (d / name).write_bytes(data)
            return d / name
        return write

    def zip_of_text(d):
        import zipfile

        with zipfile.ZipFile(d / "z.npz", "w") as archive:
            archive.writestr("x.txt", "1 2 3")
        return d / "z.npz"

    def npy_as_npz(d):
        np.save(d / "one.npy", good["x"])
        (d / "one.npy").rename(d / "one.npz")
        return d / "one.npz"

    nan = {**good, "x": good["x"].copy()}
    nan["x"][3, 2] = np.nan
    inf = {**good, "mask": good["mask"].copy()}
    inf["mask"][0, 0] = np.inf
    return [
        ("missing array", npz("c.npz", x=good["x"]), "calibration", ["c.npz", "no array 'mask'", "inputs are x, mask"]),
        ("extra array", npz("c.npz", **good, scale=good["mask"]), "calibration", ["c.npz", "unexpected array 'scale'"]),
        ("trailing shape", npz("c.npz", **{**good, "x": good["x"][:, :6]}), "calibration",
         ["c.npz", "'x' has shape [8, 6]", "[4, 8]", "every dimension but the first"]),
        ("dtype", npz("c.npz", **{**good, "x": good["x"].astype(np.float64)}), "calibration",
         ["c.npz", "'x' is torch.float64", "torch.float32"]),
        ("nan", npz("c.npz", **nan), "calibration", ["c.npz", "'x' has 1 NaN/Inf"]),
        ("inf", npz("e.npz", **inf, labels=labels), "eval", ["e.npz", "'mask' has 1 NaN/Inf"]),
        ("labels length", npz("e.npz", **good, labels=labels[:5]), "eval", ["e.npz", "8 samples but 5 labels"]),
        ("float top1 labels", npz("e.npz", **good, labels=labels.astype(np.float32)), "eval",
         ["e.npz", "top1 labels are float32[8]", "integer class index"]),
        ("no samples", npz("c.npz", x=good["x"][:0], mask=good["mask"][:0]), "calibration", ["c.npz", "(>0)"]),
        ("empty file", raw("c.npz", b""), "calibration", ["c.npz", "empty"]),
        ("no arrays", npz("c.npz"), "calibration", ["c.npz", "no arrays"]),
        ("text as npz", raw("c.npz", b"x,mask\n1,2\n"), "calibration", ["c.npz", "not an .npz archive (no zip header)"]),
        ("zip of text", zip_of_text, "calibration", ["z.npz", "array 'x.txt' cannot be read", "not a .npy array"]),
        ("npy as npz", npy_as_npz, "calibration", ["one.npz", "single .npy array"]),
        ("object array", npz("c.npz", x=np.array([{"a": 1}] * 8, dtype=object), mask=good["mask"]), "calibration",
         ["c.npz", "array 'x' cannot be read"]),
        ("text as safetensors", raw("e.safetensors", b"not a header at all"), "eval",
         ["e.safetensors", "not a readable .safetensors"]),
        ("other format", raw("c.csv", b"1,2\n"), "calibration", ["c.csv", "not an .npz or .safetensors"]),
    ]


@pytest.mark.parametrize("write, flag, fragments", [pytest.param(*case[1:], id=case[0]) for case in _bad_files()])
def test_a_bad_data_file_is_refused_before_any_work(tmp_path, write, flag, fragments):
    path = write(tmp_path)
    model = CountingModel().eval()
    store = tmp_path / "runs.db"
    with pytest.raises(InputError) as caught:
        hone.optimize(model, (torch.randn(4, 8), torch.ones(4, 1)), **{flag: path}, store=store, progress=False)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    assert "\n" not in message
    assert model.calls == 0  # not even the reference ran
    assert not store.exists()


def test_missing_file_and_the_eval_split_as_calibration_are_refused(tmp_path):
    model = CountingModel().eval()
    inputs = (torch.randn(4, 8), torch.ones(4, 1))
    with pytest.raises(InputError, match=re.escape("calibration file absent.npz: no such file")):
        hone.optimize(model, inputs, calibration=tmp_path / "absent.npz", store=False, progress=False)
    same = _npz(tmp_path / "split.npz", **_arrays(8), labels=np.zeros(8, np.int64))
    copy = tmp_path / "copy.npz"
    copy.write_bytes(same.read_bytes())
    with pytest.raises(InputError, match="calibration file copy.npz and eval file split.npz hold the same data"):
        hone.optimize(model, inputs, eval=str(same), calibration=str(copy), store=False, progress=False)
    assert model.calls == 0


FACTORY = '''
import torch
from hone.models import TrainSet
from hone.models.factory import FactoryResult


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(x)


def step(model, inputs, labels):
    return torch.nn.functional.cross_entropy(model(*inputs)[0], labels)


def _parts():
    torch.manual_seed(0)
    return Net(), torch.randn(2, 6), torch.randn(32, 6), TrainSet({"x": torch.randn(40, 6)}, step, torch.zeros(40, dtype=torch.long))


def as_dict():
    model, x, calibration, train = _parts()
    return {"model": model, "example_inputs": x, "calibration": calibration, "train": train}


def as_result():
    model, x, calibration, train = _parts()
    return FactoryResult(model, x, calibration=calibration, train=train)


def unknown_key():
    return {"model": Net(), "example_inputs": torch.randn(2, 6), "calibrate": torch.randn(4, 6)}


def no_inputs():
    return {"model": Net()}


def bad_train():
    return {"model": Net(), "example_inputs": torch.randn(2, 6), "train": torch.randn(4, 6)}


def bad_calibration():
    return {"model": Net(), "example_inputs": torch.randn(2, 6), "calibration": torch.randn(4, 5)}
'''


@pytest.mark.parametrize("function", ["as_dict", "as_result"])
def test_a_factory_brings_calibration_and_train_sets(tmp_path, function):
    path = tmp_path / "net.py"
    path.write_text(FACTORY)
    workload = load_model(f"{path}:{function}")
    assert list(workload.calibration) == ["x"] and workload.calibration["x"].shape == (32, 6)
    assert workload.calibration_description == f"32 samples from {function}() in net.py"
    assert len(workload.train) == 40 and workload.train.step.__name__ == "step"
    assert workload.calibration_samples(8)[1] is None  # no warning: a real calibration set
    workload.check_data()


@pytest.mark.parametrize("function, message", [
    ("unknown_key", r"returned a dict with unknown keys \['calibrate'\]"),
    ("no_inputs", "returned a dict with no 'example_inputs'"),
    ("bad_train", "its train is a Tensor, not a hone TrainSet"),
])
def test_a_factory_dict_of_the_wrong_form(tmp_path, function, message):
    path = tmp_path / "net.py"
    path.write_text(FACTORY)
    with pytest.raises(InputError, match=message):
        load_model(f"{path}:{function}")


def test_a_factorys_calibration_of_the_wrong_shape_is_refused_before_any_work(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(FACTORY)
    with pytest.raises(InputError, match=re.escape("calibration set: input 'x' has shape [4, 5]")):
        hone.optimize(f"{path}:bad_calibration", store=tmp_path / "runs.db", progress=False)
    assert not (tmp_path / "runs.db").exists()
