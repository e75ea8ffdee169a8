"""load_model's spec parsing: dispatch, refusals and batch-size validation (no heavy loads)."""

import subprocess
import sys

import pytest

from hone.errors import InputError, UnsafeModel
from hone.models import BUILTINS, load_model


def test_builtins_are_listed():
    assert set(BUILTINS) == {"minilm", "digits-cnn"}


@pytest.mark.parametrize("spec", ["resnet", "nonsense", "", "   ", "models/"])
def test_unknown_model(spec):
    with pytest.raises(InputError) as err:
        load_model(spec)
    assert "minilm, digits-cnn" in str(err.value) and "hf:<arch>" in str(err.value)
    assert "file.py:factory" in str(err.value)


def test_unknown_model_message():
    with pytest.raises(InputError, match="unknown model 'nonsense'"):
        load_model("nonsense")


@pytest.mark.parametrize("spec", ["model.pt", "dir/model.pth", "pytorch_model.bin", "x.PT"])
def test_pickles_are_refused(spec):
    with pytest.raises(UnsafeModel) as err:
        load_model(spec)
    assert "pickle" in str(err.value) and "--trust-pickle" in str(err.value)


@pytest.mark.parametrize("spec", ["exported.pt2", "model.onnx", "model.jit"])  # loaded: test_<format>_file.py
def test_missing_model_files(spec):
    with pytest.raises(InputError, match="no such file") as err:
        load_model(spec)
    assert not isinstance(err.value, UnsafeModel)


@pytest.mark.parametrize("sizes", [(0,), (-1, 2), (1, 1), (), (1.5,), (True,), "8", 8])
def test_bad_batch_sizes(sizes):
    with pytest.raises(InputError, match="batch sizes"):
        load_model("digits-cnn", batch_sizes=sizes)


def test_builtin_dispatch_and_source():
    workload = load_model(" digits-cnn ", batch_sizes=[2, 3])
    assert workload.source == "digits-cnn" and workload.name == "digits-cnn"
    assert [s.label for s in workload.input_sets] == ["bs2", "bs3"]


def test_hf_dispatch_keeps_the_spec_as_source():
    pytest.importorskip("transformers")
    workload = load_model("hf:ViT", batch_sizes=(1,))
    assert workload.source == "hf:ViT" and workload.task == "image-feature-extraction"


def test_import_stays_light():
    # the CLI imports hone.models for --help; transformers and scikit-learn load only when used
    code = "import sys, hone.models; print(sorted({m.split('.')[0] for m in sys.modules} & {'transformers', 'sklearn'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_calibration_samples_fall_back_to_example_inputs_with_a_warning():
    import torch

    from hone.models.workload import InputSet, Workload

    w = Workload("w", torch.nn.Identity(), [InputSet("bs2", {"x": torch.zeros(2, 3)}), InputSet("bs4", {"x": torch.ones(4, 3)})])
    samples, warning = w.calibration_samples(limit=5)
    assert samples[0].shape == (5, 3) and "no calibration set" in warning
    w.calibration = {"x": torch.full((10, 3), 7.0)}
    samples, warning = w.calibration_samples(limit=4)
    assert warning is None and samples[0].shape == (4, 3) and float(samples[0][0, 0]) == 7.0


def test_calibration_batches_follow_the_example_batch_size(tmp_path):
    import torch

    from hone.plugin import BuildContext

    ctx = BuildContext((torch.zeros(4, 3),), ["x"], ["y"], tmp_path, 1, calibration=(torch.arange(10.0).reshape(10, 1).expand(10, 3),))
    batches = ctx.calibration_batches()
    assert [b[0].shape[0] for b in batches] == [4, 4, 4]
    assert float(batches[-1][0][-1, 0]) == 9.0  # padded with the final sample
