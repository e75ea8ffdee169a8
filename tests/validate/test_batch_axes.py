"""Each output's batch axis: inferred from two batch sizes, declared, and used wherever outputs
are cut into samples and joined (the eval loop)."""

from __future__ import annotations

import pytest
import torch

from hone.errors import InputError
from hone.models.workload import EvalSet, InputSet, Workload
from hone.validate.batch_axes import another_batch, infer_axis, join, take_valid
from hone.validate.check import eval_outputs, score
from hone.validate.reference import compute_reference
from tiny_models import TimeMajorRecognizer, TinyMLP, ctc_greedy_decode, label_sequences, recognizer_data
from tiny_models import sequence_accuracy


def test_the_axis_that_scales_with_the_batch_is_the_batch_axis():
    assert infer_axis(torch.zeros(12, 2, 6), 2, torch.zeros(12, 3, 6), 3) == 1  # time-major
    assert infer_axis(torch.zeros(2, 12), 2, torch.zeros(3, 12), 3) == 0
    assert infer_axis(torch.zeros(6), 2, torch.zeros(6), 3) is None  # a per-model constant
    assert infer_axis(torch.zeros(24, 5), 2, torch.zeros(36, 5), 3) == 0  # flattened (B*T, C): 12 rows a sample
    # Batch 4 with 4 time steps: the two sizes tell time from batch where one could not.
    assert infer_axis(torch.zeros(4, 4, 6), 4, torch.zeros(4, 5, 6), 5) == 1
    why = infer_axis(torch.zeros(7, 3), 2, torch.zeros(9, 3), 3)  # grows, but not per sample
    assert isinstance(why, str) and "[7, 3]" in why


def test_padding_is_dropped_and_batches_joined_along_the_batch_axis():
    t = torch.arange(3 * 4 * 2).reshape(3, 4, 2)  # (T, B, C), batch 4 of which 3 are real
    assert torch.equal(take_valid(t, 1, 4, 3), t[:, :3])
    flat = torch.arange(8 * 2).reshape(8, 2)  # (B*T, C) with T=2
    assert torch.equal(take_valid(flat, 0, 4, 3), flat[:6])
    constant = torch.ones(5)
    assert take_valid(constant, None, 4, 3) is constant and join([constant, constant], None) is constant
    assert join([t[:, :2], t[:, 2:]], 1).equal(t)


def test_eval_loop_keeps_a_time_major_output_whole_at_any_batch_size():
    model = TimeMajorRecognizer().eval()
    samples = recognizer_data(23)  # 23: no multiple of the batch sizes below
    with torch.no_grad():
        whole = model(samples)
    names, axes = ["logits", "blank_prior"], [1, None]
    for batch in (2, 5, 32):
        ev = EvalSet({"image": samples}, metric="top1")

        def predict(x):
            out = model(x)
            return out["logits"], out["blank_prior"]

        with torch.no_grad():
            got = eval_outputs(predict, ev, batch, names, axes)
        torch.testing.assert_close(got["logits"], whole["logits"], rtol=1e-5, atol=1e-5)
        assert torch.equal(got["blank_prior"], whole["blank_prior"])  # compared whole, not stacked


def _recognizer_workload(eval_set: EvalSet | None = None, sizes=(2, 5)) -> Workload:
    model = TimeMajorRecognizer().eval()
    sets = [InputSet(f"bs{b}", {"image": recognizer_data(b, seed=1)}) for b in sizes]
    return Workload("recognizer", model, sets, eval=eval_set)


def _eval_set(samples: int = 23) -> EvalSet:
    model, data = TimeMajorRecognizer().eval(), recognizer_data(samples)
    with torch.no_grad():
        labels = label_sequences(ctc_greedy_decode(model(data)["logits"]))
    return EvalSet({"image": data}, metric=sequence_accuracy, labels=labels)


@pytest.mark.parametrize("sizes", [(2, 5), (3,)])  # two input sets, or one (then run at batch N+1)
def test_reference_infers_time_major_and_constant_outputs(sizes):
    reference = compute_reference(_recognizer_workload(_eval_set(), sizes))
    assert reference.batch_axes_by_name == {"logits": 1, "blank_prior": None}
    assert reference.batch_axes_note is None
    # The reference's own score is the whole model's (the labels are its decodes): 1.0 exactly.
    assert reference.score == 1.0
    assert reference.eval_outputs["logits"].shape == (12, 23, 6)


def test_a_metric_gets_outputs_as_the_model_lays_them_out_and_built_ins_get_batch_first():
    logits = torch.randn(12, 5, 6)  # (T, N, C)
    seen = {}

    def metric(outputs, reference, labels):
        seen["shape"] = tuple(outputs["logits"].shape)
        return 1.0

    score(metric, {"logits": logits}, {"logits": logits}, None, [1])
    assert seen["shape"] == (12, 5, 6)
    # Built-in embedding_cosine indexes samples on dim 0: it sees (N, T, C), so sample-wise cosines.
    shuffled = logits.clone()
    shuffled[:, 0] = logits[:, 1]
    cosine = score("embedding_cosine", {"logits": shuffled}, {"logits": logits}, None, [1])
    per_sample = torch.nn.functional.cosine_similarity(shuffled.movedim(1, 0).flatten(1), logits.movedim(1, 0).flatten(1))
    assert cosine == pytest.approx(float(per_sample.double().mean()))


def test_declared_axes_override_and_are_checked():
    ev = _eval_set()
    ev.batch_axes = {"blank_prior": None, "logits": -2}  # -2: counted from the end, dim 1
    assert compute_reference(_recognizer_workload(ev)).batch_axes == [1, None]
    ev.batch_axes = {"scores": 0}
    with pytest.raises(InputError, match="does not return"):
        compute_reference(_recognizer_workload(ev))
    ev.batch_axes = {"logits": 2}  # the 6 classes: no multiple of batch 5
    with pytest.raises(InputError, match="no multiple of the batch size 5"):
        compute_reference(_recognizer_workload(ev, sizes=(5,)))


class _Ragged(torch.nn.Module):
    """An output whose length grows with the batch, but not per sample (a nonzero list)."""

    def forward(self, x):
        return x.sum(-1), torch.arange(int(x.shape[0]) * 2 + 1).float()


def test_an_output_that_cannot_be_cut_into_samples_stops_an_eval_run_before_any_work():
    x = torch.randn(3, 4)
    ev = EvalSet({"x": torch.randn(7, 4)}, metric=lambda o, r, l: 1.0)
    with pytest.raises(InputError, match="output_1.*declare its batch axis"):
        compute_reference(Workload("ragged", _Ragged(), [InputSet("bs3", {"x": x})], eval=ev))
    # Without an eval set nothing is cut, so nothing needs the axis.
    assert compute_reference(Workload("ragged", _Ragged(), [InputSet("bs3", {"x": x})])).batch_axes == [0, None]


class _FixedBatch(torch.nn.Module):
    def forward(self, x):
        return x.reshape(3, -1).sum(-1)  # runs at batch 3 only


def test_a_model_that_runs_at_one_batch_size_gets_assumed_axes_with_a_note():
    reference = compute_reference(Workload("fixed", _FixedBatch(), [InputSet("bs3", {"x": torch.randn(3, 4)})]))
    assert reference.batch_axes == [0] and "assumed" in reference.batch_axes_note


class _NanOutput(torch.nn.Module):
    def forward(self, x):
        return {"good": x * 2, "bad": torch.log(x)}  # log of negatives: NaN


def test_a_nan_reference_is_an_input_error_naming_the_output_and_the_count():
    x = torch.tensor([[1.0, -1.0, 2.0, -3.0]])
    with pytest.raises(InputError) as info:
        compute_reference(Workload("nan", _NanOutput(), [InputSet("bs1", {"x": x})]))
    message = str(info.value)
    assert "'bad' has 2 NaN/Inf values (of 4)" in message and "bs1" in message


def test_another_batch_repeats_rows_cyclically():
    x = torch.arange(6).reshape(3, 2)
    assert torch.equal(another_batch((x,))[0], torch.tensor([[0, 1], [2, 3], [4, 5], [0, 1]]))


def test_batch_first_models_are_unchanged():
    reference = compute_reference(Workload("mlp", TinyMLP().eval(), [InputSet("bs4", {"x": torch.randn(4, 32)})]))
    assert reference.batch_axes == [0] and reference.batch_axes_note is None
