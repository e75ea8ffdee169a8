"""A recognizer whose logits are time-major (T, B, C), judged by a metric that decodes along the
time axis, at two batch sizes, on an eval set whose size is no multiple of either: eager (the
control) and a faithful candidate pass, a harmful quantization fails."""

from __future__ import annotations

import pytest
import torch

import hone
from hone.models.workload import EvalSet, InputSet, Workload
from hone.search.result import Status
from tiny_models import TimeMajorRecognizer, ctc_greedy_decode, label_sequences, recognizer_data, sequence_accuracy

pytestmark = pytest.mark.slow


def _workload() -> Workload:
    model = TimeMajorRecognizer().eval()
    samples = recognizer_data(23)
    with torch.no_grad():
        labels = label_sequences(ctc_greedy_decode(model(samples)["logits"]))
    assert len({tuple(row) for row in labels.tolist()}) > 3  # the float model decodes varied sequences
    sets = [InputSet(f"bs{b}", {"image": recognizer_data(b, seed=b)}) for b in (2, 5)]
    return Workload("recognizer", model, sets, eval=EvalSet({"image": samples}, sequence_accuracy, labels=labels))


def test_time_major_outputs_are_judged_along_their_batch_axis():
    result = hone.optimize(
        _workload(), include=["torchscript-trace", "torch-int8-dynamic"], fallback_attempts=0, store=False,
        progress=False, profile_first=False, measure_time_s=0.3,
    )
    assert result.run.output_batch_axes == {"logits": 1, "blank_prior": None}
    assert result.run.reference_scores == {"eval": 1.0}  # the whole model's own decodes
    by = {(r.recipe.label, r.input_set): r for r in result.results}
    for label in ("eager", "torchscript-trace"):
        for input_set in ("bs2", "bs5"):
            r = by[(label, input_set)]
            assert r.status is Status.OK, (label, input_set, r.reason)
            assert r.verdict.metric.value == 1.0
    for input_set in ("bs2", "bs5"):  # the outlier channel rounds the head's input to nothing
        r = by[("torch-int8-dynamic", input_set)]
        assert r.status is Status.WRONG_ANSWER and r.verdict.metric.value < 0.5, r.reason
    assert result.selection.best is not None and result.selection.best.label in ("eager", "torchscript-trace")
