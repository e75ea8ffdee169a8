"""hf:<arch>: transformers architectures from configs, random but seeded weights."""

import pytest
import torch

from hone.errors import InputError
from hone.models import load_model, normalize_outputs
from hone.models.hf import load_hf

pytest.importorskip("transformers")

TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=1000)
TINY_RESNET = dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], image_size=32)
TINY_GPT2 = dict(n_embd=32, n_layer=2, n_head=2, vocab_size=1000, n_positions=64)


def _run(workload, label):
    with torch.no_grad():
        return normalize_outputs(workload.module(**workload.input_set(label).tensors))


def test_tiny_bert_text_inputs():
    workload = load_hf("bert", config_overrides=TINY_BERT)
    assert workload.task == "text-feature-extraction" and workload.eval is None
    assert not workload.module.training
    assert [s.label for s in workload.input_sets] == ["bs1", "bs8"]
    ids = workload.input_set("bs8").tensors["input_ids"]
    assert ids.shape == (8, 128) and ids.dtype == torch.int64 and int(ids.max()) < 1000
    assert torch.equal(workload.input_set("bs8").tensors["attention_mask"], torch.ones(8, 128, dtype=torch.int64))
    assert _run(workload, "bs8")["last_hidden_state"].shape == (8, 128, 32)


def test_tiny_resnet_vision_inputs():
    workload = load_hf("resnet-50", batch_sizes=(2,), config_overrides=TINY_RESNET)
    assert workload.task == "image-feature-extraction"
    pixels = workload.input_set("bs2").tensors["pixel_values"]
    assert pixels.shape == (2, 3, 32, 32) and pixels.dtype == torch.float32
    assert "pooler_output" in _run(workload, "bs2")


def test_gpt2_outputs_carry_no_cache():
    workload = load_hf("gpt2", batch_sizes=(2,), config_overrides=TINY_GPT2)
    ids = workload.input_set("bs2").tensors["input_ids"]
    assert ids.shape == (2, 64)  # capped at the tiny config's n_positions
    outputs = _run(workload, "bs2")
    assert list(outputs) == ["last_hidden_state"]  # no past_key_values: nothing uncomparable


def test_any_model_type_through_autoconfig():
    overrides = dict(dim=32, n_layers=1, n_heads=2, hidden_dim=64, vocab_size=500)
    workload = load_hf("distilbert", batch_sizes=(1,), config_overrides=overrides)
    assert "last_hidden_state" in _run(workload, "bs1")


def test_two_loads_have_identical_weights_and_inputs():
    a = load_hf("bert", config_overrides=TINY_BERT)
    torch.manual_seed(1234)  # the global RNG state in between must not matter
    b = load_hf("bert", config_overrides=TINY_BERT)
    for (name, x), (_, y) in zip(a.module.state_dict().items(), b.module.state_dict().items()):
        assert torch.equal(x, y), name
    assert torch.equal(a.input_set("bs8").tensors["input_ids"], b.input_set("bs8").tensors["input_ids"])


def test_unknown_arch_lists_aliases():
    with pytest.raises(InputError) as err:
        load_model("hf:no-such-arch")
    assert "no-such-arch" in str(err.value) and "resnet-50" in str(err.value) and "gpt2" in str(err.value)
    assert "\n" not in str(err.value)


def test_empty_arch():
    with pytest.raises(InputError, match="architecture"):
        load_model("hf:")


def test_default_configs_are_the_real_sizes():
    # the aliases must mean the familiar models, not whatever a config default drifts to
    resnet = load_model("hf:resnet-50", batch_sizes=(1,))
    bert = load_model("hf:bert", batch_sizes=(1,))
    assert resnet.source == "hf:resnet-50"
    assert resnet.input_set("bs1").tensors["pixel_values"].shape == (1, 3, 224, 224)
    assert sum(p.numel() for p in resnet.module.parameters()) == pytest.approx(23.5e6, rel=0.01)
    assert sum(p.numel() for p in bert.module.parameters()) == pytest.approx(109.5e6, rel=0.01)
