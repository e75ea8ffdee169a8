"""pt2e_qat: int8 quantization-aware training through the user's train step."""

import copy
import json
import tempfile
from pathlib import Path

import pytest

import skips
import torch

from hone._optional import is_available
from hone.errors import InputError, Unsupported
from hone.models.workload import FlatIO, InputSet, TrainSet, Workload
from hone.passes.quantize import QuantizationPass, Scheme
from hone.passes.torch.pt2e_qat import NO_TRAIN_SET, Pt2eQat, Pt2eQatConfig
from hone.plugin import Artifact, BuildContext
from hone.runtimes.inductor import InductorConfig
from hone.search.recipe import Step
from harness import build, layer_quantization, this_cpu

REQUIRES_TORCHAO = pytest.mark.skipif(not is_available("torchao"), reason=skips.REQUIRES_TORCHAO)


class BnCNN(torch.nn.Module):
    """conv -> batch norm -> relu -> pool -> dropout -> linear: QAT must fold the batch norm and
    drop the dropout once trained."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.dropout = torch.nn.Dropout(0.5)
        self.head = torch.nn.Linear(8 * 4 * 4, classes)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv(pixels))), 2)
        return self.head(self.dropout(x.flatten(1)))


class FixedBatch(BnCNN):
    """Hard-codes the batch in a reshape: export cannot make the batch dim symbolic. (No batch
    norm: folding it costs torchao ~15 s of pattern exports, tested once above is enough.)"""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv(pixels)), 2)
        return self.head(x.reshape(4, -1))


def cross_entropy(model, inputs, labels):
    (logits,) = model(*inputs)
    return torch.nn.functional.cross_entropy(logits, labels)


def _model_and_data(cls=BnCNN):
    """A model with non-trivial batch-norm statistics, and a train set labelled by its own fp32
    predictions: QAT must keep what the float model answers."""
    torch.manual_seed(0)
    model = cls()
    model.bn.running_mean.uniform_(-0.5, 0.5)
    model.bn.running_var.uniform_(0.5, 2.0)
    model.eval()
    samples = torch.rand(160, 3, 8, 8)
    with torch.no_grad():
        labels = torch.cat([model(s) for s in samples.split(4)]).argmax(-1)
    train = TrainSet({"pixels": samples[:128]}, cross_entropy, labels[:128])
    return model, train, samples[128:]


def _ctx(inputs, train=None) -> BuildContext:
    return BuildContext(inputs, ["pixels"], ["output"], Path(tempfile.mkdtemp(prefix="hone-test-")), 1, train=train)


def _flat(model) -> Artifact:
    return Artifact("torch", FlatIO(model, ["pixels"], ["output"]).eval())



@REQUIRES_TORCHAO
def test_qat_fine_tunes_through_inductor_and_keeps_the_answers():
    model, train, held_out = _model_and_data()
    before = copy.deepcopy(model.state_dict())
    workload = Workload("tiny", model, [InputSet("bs8", {"pixels": held_out[:8]})], train=train)
    (recipe,) = Pt2eQat.propose(workload, this_cpu(), "cpu")
    recipe = type(recipe)(recipe.label, (Step("pt2e_qat", Pt2eQatConfig(steps=30, lr=1e-3, batch_size=16)),),
                          recipe.runtime, recipe.origin, recipe.compute_dtype)
    # Trains at batch 16, runs at the example batch 8: the batch dim is exported dynamic.
    runner, artifact, named, expected = build(recipe, model, held_out[:8], train=train)
    notes = artifact.notes["pt2e_qat"]
    assert notes["steps"] == 30 and notes["batch_size"] == 16 and notes["dynamic_batch"] is True
    assert 0 < notes["final_loss"] < 10 and notes["initial_loss"] > 0 and notes["train_s"] > 0
    assert notes["qdq_ops"] > 0 and notes["kept_float"] == [] and artifact.compute_dtype == "int8"
    graph = artifact.module.graph_module
    # Batch norm folded into the int8 conv, dropout in its eval form (identity).
    assert not any("batch_norm" in str(n.target) for n in graph.graph.nodes)
    dropouts = [n for n in graph.graph.nodes if n.target is torch.ops.aten.dropout.default]
    assert len(dropouts) == 1 and dropouts[0].args[2] is False
    assert layer_quantization(graph) == {"conv": (True, True), "head": (True, True)}
    assert runner.info()["backend"] == "inductor" and runner.info()["freezing"] is True
    # The user's model was neither trained nor switched to train mode.
    assert not model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    agree = []
    for start in range(0, len(held_out), 8):
        batch = held_out[start : start + 8]
        (got,) = runner(batch)
        with torch.no_grad():
            agree.append(got.argmax(-1) == model(batch).argmax(-1))
    assert torch.cat(agree).float().mean().item() >= 0.9


@REQUIRES_TORCHAO
def test_qat_keep_float_leaves_the_named_layer_in_float():
    model, train, held_out = _model_and_data()
    cfg = Pt2eQatConfig(steps=5, batch_size=16, keep_float=("conv",))
    artifact = Pt2eQat(cfg).apply(_flat(model), _ctx((held_out[:8],), train))
    assert layer_quantization(artifact.module.graph_module) == {"conv": (False, False), "head": (True, True)}
    assert artifact.notes["pt2e_qat"]["kept_float"] == ["conv"]
    with pytest.raises(InputError, match=r"keep_float names \['bn'\]"):
        Pt2eQat(Pt2eQatConfig(keep_float=("bn",))).apply(_flat(model), _ctx((held_out[:8],), train))


@REQUIRES_TORCHAO
def test_qat_with_a_batch_that_cannot_be_dynamic_trains_at_the_example_batch():
    model, train, held_out = _model_and_data(FixedBatch)
    artifact = Pt2eQat(Pt2eQatConfig(steps=4, batch_size=16)).apply(_flat(model), _ctx((held_out[:4],), train))
    notes = artifact.notes["pt2e_qat"]
    assert notes["dynamic_batch"] is False and notes["batch_size"] == 4
    assert notes["static_batch_reason"]
    with torch.no_grad():
        (got,) = artifact.module.eval()(held_out[:4])
    assert got.shape == (4, 4)


def test_qat_without_a_train_set_is_unsupported_with_the_way_out():
    model, _, held_out = _model_and_data()
    with pytest.raises(Unsupported) as info:
        Pt2eQat().apply(_flat(model), _ctx((held_out[:4],)))
    assert str(info.value) == NO_TRAIN_SET
    assert "train=TrainSet(...)" in NO_TRAIN_SET and "digits-cnn" in NO_TRAIN_SET


def test_qat_train_set_must_name_the_inputs():
    model, train, held_out = _model_and_data()
    wrong = TrainSet({"image": train.samples["pixels"]}, cross_entropy, train.labels)
    with pytest.raises(InputError, match=r"no samples for input\(s\) \['pixels'\]"):
        Pt2eQat().apply(_flat(model), _ctx((held_out[:4],), wrong))


def test_qat_is_proposed_only_with_a_train_set_on_cpu():
    model, train, held_out = _model_and_data()
    inputs = [InputSet("bs4", {"pixels": held_out[:4]})]
    assert Pt2eQat.propose(Workload("tiny", model, inputs), this_cpu(), "cpu") == []
    with_train = Workload("tiny", model, inputs, train=train)
    assert Pt2eQat.propose(with_train, None, "cuda") == []
    (recipe,) = Pt2eQat.propose(with_train, this_cpu(), "cpu")
    assert (recipe.label, recipe.compute_dtype, recipe.cost) == ("pt2e-int8-qat", "int8", 4.0)
    assert recipe.runtime == Step("inductor", InductorConfig(freezing=True))
    bits = 7 if this_cpu().int8_dot_saturates else 8  # 7-bit weights where int8 dot products saturate
    assert recipe.passes == (Step("pt2e_qat", Pt2eQatConfig(weight_bits=bits)),) and "train step" in recipe.origin


def test_qat_config_validates_and_round_trips():
    assert issubclass(Pt2eQat, QuantizationPass) and Pt2eQat().scheme() == Scheme()
    for bad, match in ((dict(steps=0), "steps"), (dict(lr=0.0), "lr"), (dict(batch_size=0), "batch_size"),
                       (dict(optimizer="lbfgs"), "optimizer 'lbfgs'")):
        with pytest.raises(InputError, match=match):
            Pt2eQatConfig(**bad)
    config = Pt2eQatConfig(steps=50, lr=3e-4, batch_size=8, optimizer="sgd", keep_float=("conv",))
    assert Pt2eQatConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
