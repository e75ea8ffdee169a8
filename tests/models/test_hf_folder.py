"""A transformers model folder (save_pretrained): offline, safetensors, its tokenizer, never its
own code, pickled weights only with --trust-pickle (unpickled in a child), and an optimize run."""

from __future__ import annotations

import json

import pytest
import torch

import hone
from hone.errors import InputError, UnsafeModel
from hone.models import load_model, normalize_outputs

transformers = pytest.importorskip("transformers")

TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=60,
                 max_position_embeddings=64)
WORDS = "a the man is playing guitar on street cat sleeping window how do i reset my password".split()


def _bert(seed=0):
    torch.manual_seed(seed)
    return transformers.BertModel(transformers.BertConfig(**TINY_BERT)).eval()


def _bert_folder(tmp_path, tokenizer=True, name="bert-folder"):
    folder = tmp_path / name
    model = _bert()
    model.save_pretrained(folder)
    if tokenizer:
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
        transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(folder)
    return folder, model


def test_text_folder_with_its_tokenizer(tmp_path):
    folder, model = _bert_folder(tmp_path)
    workload = load_model(str(folder))
    assert [s.label for s in workload.input_sets] == ["bs1", "bs8"]
    inputs = workload.input_set("bs8").tensors
    assert set(inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    assert inputs["input_ids"].shape == (8, 64)  # capped at the config's 64 positions
    ids = set(inputs["input_ids"].unique().tolist())
    assert {2, 3} <= ids and ids - {0, 1, 2, 3}  # [CLS], [SEP] and real words, not only [UNK]
    assert 0 < int(inputs["attention_mask"].sum()) < inputs["attention_mask"].numel()  # padded sentences
    with torch.no_grad():
        got = normalize_outputs(workload.module(**inputs))
        want = normalize_outputs(model(**inputs))
    assert list(got) == ["last_hidden_state", "pooler_output"]
    torch.testing.assert_close(got["last_hidden_state"], want["last_hidden_state"])  # the saved weights
    assert workload.calibration is not None and workload.calibration["input_ids"].shape[1] == 64
    assert workload.provenance["format"] == "transformers-folder" and workload.provenance["weights"] == "safetensors"
    assert "tokenizer" in workload.provenance["inputs"] and workload.task == "text-feature-extraction"
    short = load_model(str(folder), input_shapes=["input_ids=2x16"])
    assert [s.label for s in short.input_sets] == ["bs2"] and short.input_set("bs2").tensors["input_ids"].shape == (2, 16)
    with pytest.raises(InputError, match="more than the model's 64 positions"):
        load_model(str(folder), input_shapes=["input_ids=1x100"])


def test_text_folder_without_a_tokenizer(tmp_path):
    folder, _ = _bert_folder(tmp_path, tokenizer=False)
    workload = load_model(str(folder), batch_sizes=(2,))
    ids = workload.input_set("bs2").tensors["input_ids"]
    assert ids.shape == (2, 64) and int(ids.max()) < TINY_BERT["vocab_size"]
    assert "random token ids" in workload.provenance["inputs"] and workload.calibration is None


def test_image_folder(tmp_path):
    folder = tmp_path / "vit"
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                    image_size=32, patch_size=8, num_channels=3)
    transformers.ViTModel(config).save_pretrained(folder)
    workload = load_model(str(folder), batch_sizes=(2,))
    pixels = workload.input_set("bs2").tensors["pixel_values"]
    assert pixels.shape == (2, 3, 32, 32) and pixels.dtype == torch.float32
    assert "pooler_output" in normalize_outputs(workload.module(pixel_values=pixels))
    assert workload.task == "image-feature-extraction"


def test_the_base_model_of_a_task_checkpoint(tmp_path):
    folder = tmp_path / "classifier"
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(transformers.BertConfig(**TINY_BERT, num_labels=3)).save_pretrained(folder)
    workload = load_model(str(folder), batch_sizes=(1,))
    assert type(workload.module).__name__ == "BertModel"
    assert "base model of BertForSequenceClassification" in workload.description


def test_remote_code_is_refused_unrun(tmp_path):
    folder, _ = _bert_folder(tmp_path, tokenizer=False)
    sentinel = tmp_path / "imported"
    (folder / "modeling_custom.py").write_text(f"open({str(sentinel)!r}, 'w').close()\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsafeModel, match="code in the folder") as err:
        load_model(str(folder))
    assert "modeling_custom.py" in str(err.value)
    assert not sentinel.exists()


def test_a_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="without config.json"):
        load_model(str(tmp_path / "empty"))
    folder, _ = _bert_folder(tmp_path, tokenizer=False)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(InputError, match="no \\*.safetensors"):
        load_model(str(folder))


def test_pickled_weights_need_trust_pickle_and_load_in_a_child(tmp_path):
    folder, model = _bert_folder(tmp_path, tokenizer=False)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(UnsafeModel, match="pickles only") as err:
        load_model(str(folder))
    assert "--trust-pickle" in err.value.hint
    workload = load_model(str(folder), batch_sizes=(2,), trust_pickle=True)
    assert workload.provenance["trust_pickle"] is True and "child process" in workload.provenance["weights"]
    assert len(workload.provenance["sha256"]["pytorch_model.bin"]) == 64
    inputs = workload.input_set("bs2").tensors
    with torch.no_grad():
        torch.testing.assert_close(workload.module(**inputs).last_hidden_state, model(**inputs).last_hidden_state)


@pytest.mark.slow
def test_optimize_a_folder(tmp_path):
    folder, _ = _bert_folder(tmp_path)
    result = hone.optimize(str(folder), recipes=["onnxruntime"], batch_sizes=(2,), store=tmp_path / "runs.db",
                           progress=False, measure_time_s=0.2)
    assert {r.recipe.label: r.status.value for r in result.results} == {"eager": "ok", "onnxruntime": "ok"}, \
        [(r.recipe.label, r.reason) for r in result.results]
    assert result.run.provenance["format"] == "transformers-folder"
