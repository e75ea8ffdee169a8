import pytest
import torch

from hone.errors import InputError
from hone.models.workload import EvalSet
from hone.validate.check import check_metric
from hone.validate.metrics import neighbour_agreement
from hone.validate.verdict import AccuracyBudget


def _clusters() -> torch.Tensor:
    """Eight embeddings in four tight pairs: each one's nearest neighbour is its partner."""
    torch.manual_seed(0)
    centres = torch.randn(4, 16) * 5
    return torch.cat([centres + 0.01 * torch.randn(4, 16), centres + 0.01 * torch.randn(4, 16)])


def test_neighbour_agreement_is_one_for_small_noise_and_drops_when_neighbours_change():
    ref = _clusters()
    assert neighbour_agreement({"e": ref + 1e-4 * torch.randn_like(ref)}, {"e": ref}, None) == 1.0
    swapped = ref.clone()
    swapped[0] = ref[1]  # sample 0 now sits on sample 1's cluster: 0 and 5 lose their partner
    assert neighbour_agreement({"e": swapped}, {"e": ref}, None) < 1.0


def test_neighbour_agreement_needs_two_samples():
    with pytest.raises(InputError):
        neighbour_agreement({"e": torch.ones(1, 4)}, {"e": torch.ones(1, 4)}, None)


def test_extra_metrics_are_reported_and_do_not_decide():
    ref = _clusters()
    swapped = ref.clone()
    swapped[0] = ref[1]
    ev = EvalSet({"x": torch.zeros(8, 1)}, "embedding_cosine", also=("neighbour_agreement",))
    m = check_metric({"e": swapped}, {"e": ref}, ev, 1.0, AccuracyBudget(0.5))
    assert m.passed  # the cosine is within this loose budget...
    assert m.also["neighbour_agreement"] < 1.0  # ...and the neighbour change is still shown


def test_top1_agreement_counts_argmax_matches_with_the_fp32_outputs_without_labels():
    from hone.validate.metrics import resolve

    reference = {"logits": torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.5], [0.2, 0.1]])}
    outputs = {"logits": torch.tensor([[1.5, 1.0], [1.0, 0.0], [0.9, 0.5], [0.0, 0.1]])}  # rows 2 and 4 flip
    assert resolve("top1_agreement")(outputs, reference, None) == 0.5
