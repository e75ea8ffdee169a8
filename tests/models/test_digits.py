"""digits-cnn: shipped weights load strictly and really classify the held-out split."""

import pytest
import torch

from hone.models import load_model
from hone.models.digits import INPUT_NAME, WEIGHTS_PATH, DigitsCNN, digits_split

pytest.importorskip("sklearn")


def test_split_is_stratified_and_disjoint():
    train_x, train_y, test_x, test_y = digits_split()
    assert train_x.shape[1:] == test_x.shape[1:] == (1, 8, 8)
    assert train_x.dtype == torch.float32 and 0.0 <= float(train_x.min()) and float(train_x.max()) <= 1.0
    assert len(test_y) == 360 and len(train_y) == 1437
    assert torch.bincount(test_y, minlength=10).min() >= 35  # stratified: every class present
    # the same split every time: the eval set must stay the data the weights never saw
    assert torch.equal(digits_split()[2], test_x)


def test_loads_and_reaches_high_held_out_top1():
    workload = load_model("digits-cnn")
    assert workload.task == "image-classification"
    assert not workload.module.training
    assert workload.eval is not None and workload.eval.metric == "top1"
    with torch.no_grad():
        logits = workload.module(**workload.eval.samples)
    top1 = (logits.argmax(dim=1) == workload.eval.labels).float().mean().item()
    assert top1 >= 0.95


def test_input_sets_are_the_first_held_out_images():
    workload = load_model("digits-cnn")
    assert [s.label for s in workload.input_sets] == ["bs1", "bs64"]
    assert workload.input_names == [INPUT_NAME]
    assert torch.equal(workload.input_set("bs64").tensors[INPUT_NAME], workload.eval.samples[INPUT_NAME][:64])
    assert workload.has_4d_float_input
    out = workload.module(*workload.input_set("bs1").as_args())
    assert out.shape == (1, 10)


def test_custom_batch_sizes():
    workload = load_model("digits-cnn", batch_sizes=(4,))
    assert [s.batch_size for s in workload.input_sets] == [4]


def test_weights_file_matches_the_architecture():
    from safetensors.torch import load_file

    assert set(load_file(str(WEIGHTS_PATH))) == set(DigitsCNN().state_dict())


def test_calibration_set_is_disjoint_from_the_eval_split():
    import hone

    w = hone.load_model("digits-cnn")
    cal = w.calibration["pixels"].flatten(1)
    held_out = w.eval.samples["pixels"].flatten(1)
    assert cal.shape[0] == 256
    overlap = (cal[:, None, :] == held_out[None, :, :]).all(-1).any()
    assert not bool(overlap)
