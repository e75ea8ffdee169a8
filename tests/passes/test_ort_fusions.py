"""ort_transformer_fusions on a tiny BERT (random weights, seeded, built from a config): what it
fuses is read back from the graph, the fused graph keeps the answers at fp32 tolerance and any
batch size, it stacks with ORT quantization and ONNX Runtime's optimization levels, and a model
without attention gets no variant or an honest `unsupported`."""

from __future__ import annotations

import collections

import pytest
import torch

from hone.errors import Unsupported
from hone.models.workload import InputSet, Workload
from hone.passes.onnx.ort_fusions import OrtTransformerFusions, could_hold_attention
from hone.search.compose import Composer, parse
from hone.search.recipe import Recipe
from hone.validate.compare import compare_output
from harness import build, this_cpu
from tiny_models import TinyConv, tiny_mlp

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
transformers = pytest.importorskip("transformers")

NAME = OrtTransformerFusions.name
LAYERS = 2
# Per BERT layer: one attention block, two residual Add + LayerNorm (after attention, after the
# MLP), one bias + erf GELU.
EXPECTED = {"Attention": LAYERS, "SkipLayerNormalization": 2 * LAYERS, "BiasGelu": LAYERS}


def _bert(**config):
    torch.manual_seed(0)
    settings = dict(vocab_size=100, hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=64)
    return transformers.BertModel(transformers.BertConfig(**{**settings, **config})).eval()


def _inputs(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(batch)
    mask = torch.ones(batch, 16, dtype=torch.int64)
    mask[0, 10:] = 0  # right padding
    mask[-1, :3] = 0  # and left padding: the fused attention must take the raw mask, not an end index
    return torch.randint(0, 100, (batch, 16), generator=generator), mask


def _workload(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> Workload:
    return Workload("test", module, [InputSet("bs2", {f"x{i}": t for i, t in enumerate(inputs)})])


def _recipe(text: str) -> Recipe:
    return parse(text, None, this_cpu(), "cpu")


def _ops(path, domain: str | None = None) -> collections.Counter:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return collections.Counter(n.op_type for n in graph.node if domain is None or n.domain == domain)


def _assert_matches_eager(runner, artifact, named, expected) -> None:
    outputs = runner(*named.values())
    for (name, want), got in zip(expected.items(), outputs):
        check = compare_output(name, got, want, artifact.compute_dtype)
        assert check.passed, f"{name}: max abs err {check.max_abs_err} (atol {check.atol})"


@pytest.fixture(scope="module")
def fused():
    return build(_recipe("ort-fusions"), _bert(), _inputs())


def test_fuses_attention_norms_and_gelu_and_reads_the_counts_back(fused):
    runner, artifact, named, expected = fused
    notes = artifact.notes[NAME]
    assert notes["fused_operators"] == EXPECTED
    assert notes["fused_by"] == {"onnxscript": EXPECTED}  # the dynamo-aware fuser; ORT's found nothing left
    assert _ops(artifact.path, "com.microsoft") == EXPECTED  # really in the graph the runtime loads
    assert notes["nodes_after"] < notes["nodes_before"] / 2
    assert "dropped" not in notes
    assert artifact.compute_dtype == "float32"
    assert runner.report()["steps"][NAME]["fused_operators"] == EXPECTED


def test_the_fused_graph_keeps_the_answers_at_fp32_tolerance(fused):
    runner, artifact, named, expected = fused
    _assert_matches_eager(runner, artifact, named, expected)
    (got, _), want = runner(*named.values()), expected["last_hidden_state"]
    assert not torch.equal(got, want)  # ONNX Runtime's kernels ran, not a copy of eager's answer


def test_the_fused_graph_serves_other_batch_sizes(fused):
    runner, artifact, _, _ = fused
    model = _bert()
    ids, mask = _inputs(batch=5)
    assert runner.serves((ids, mask))
    with torch.inference_mode():
        want = model(input_ids=ids, attention_mask=mask).last_hidden_state
    got = runner(ids, mask)[0]
    assert compare_output("last_hidden_state", got, want, "float32").passed


def test_declarations_and_the_recipe_it_proposes():
    cls = OrtTransformerFusions
    assert (cls.consumes, cls.produces, cls.stage) == (("onnx",), "onnx", "rewrite")
    (recipe,) = cls.propose(None, this_cpu(), "cpu")
    assert recipe.label == "ort-fusions" and recipe.compute_dtype == "float32"
    assert recipe.describe() == f"onnx_export -> {NAME} -> onnxruntime"
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    # Only ONNX Runtime runs the fused ops; on CUDA TensorRT takes ONNX too and would not parse them.
    assert cls.variants(None, None, "cuda") == []


def test_a_model_without_attention_gets_no_variant():
    mlp, x = tiny_mlp()
    assert not could_hold_attention(mlp) and not could_hold_attention(TinyConv())
    assert could_hold_attention(_bert())
    assert could_hold_attention(torch.nn.TransformerEncoderLayer(32, 2, batch_first=True))  # nn.MultiheadAttention
    assert OrtTransformerFusions.variants(_workload(mlp, (x,)), None, "cpu", "onnx") == []
    assert [v.tag for v in OrtTransformerFusions.variants(_workload(_bert(), _inputs()), None, "cpu", "onnx")] == ["ort-fusions"]


def test_a_graph_with_nothing_to_fuse_is_unsupported_with_the_reason():
    mlp, x = tiny_mlp()
    with pytest.raises(Unsupported, match=r"^ort_transformer_fusions: no transformer subgraph matched: no attention, "):
        build(_recipe("ort-fusions"), mlp, (x,))


@pytest.mark.slow
def test_stacks_with_ort_dynamic_quantization():
    recipe = _recipe("ort-fusions+ort-int8-dynamic")
    assert recipe.describe() == f"onnx_export -> {NAME} -> ort_quantize_dynamic -> onnxruntime"
    assert recipe.compute_dtype == "int8"
    runner, artifact, named, expected = build(recipe, _bert(), _inputs())
    assert artifact.notes[NAME]["fused_operators"] == EXPECTED
    assert artifact.notes["ort_quantize_dynamic"]["quantized_nodes"] > 0
    ops = _ops(artifact.path)
    # The quantizer keeps the fusions; the MatMuls left (attention output, MLP) became int8.
    assert ops["Attention"] == LAYERS and ops["SkipLayerNormalization"] == 2 * LAYERS and ops["BiasGelu"] == LAYERS
    assert ops["MatMulInteger"] > 0
    (got, _) = runner(*named.values())
    check = compare_output("last_hidden_state", got, expected["last_hidden_state"], "int8")
    assert check.cosine > 0.99


@pytest.mark.slow
def test_stacks_onto_every_onnx_runtime_level_without_new_code_there():
    # Alone in the default plan; stacked onto the other levels on request only.
    assert Composer(None, this_cpu(), "cpu").stacked(OrtTransformerFusions) == []
    for level in ("extended", "basic", "disable"):
        assert _recipe(f"ort-fusions+onnxruntime-{level}").describe() == f"onnx_export -> {NAME} -> onnxruntime"
    assert _recipe("ort-fusions+ort-int8-static").describe() == f"onnx_export -> {NAME} -> ort_quantize_static -> onnxruntime"
    # With ONNX Runtime's own graph optimizations off, only the fused kernels are left to run.
    runner, artifact, named, expected = build(_recipe("ort-fusions+onnxruntime-disable"), _bert(), _inputs())
    assert runner.info()["graph_optimization_level"] == "disable"
    _assert_matches_eager(runner, artifact, named, expected)


@pytest.mark.slow
def test_a_fuser_whose_graph_is_wrong_is_dropped_and_the_other_still_fuses(monkeypatch):
    """onnxscript's result with one weight doubled (a wrong rewrite): the check against the
    unfused graph drops it, and ONNX Runtime's optimizer fuses what it knows on the export."""
    import onnx_ir as ir
    import onnxscript.rewriter.ort_fusions as ort_fusions

    real = ort_fusions.optimize_for_ort

    def wrong(model, *args, **kwargs):
        model, counts = real(model, *args, **kwargs)
        for weight in model.graph.initializers.values():  # every weight matrix doubled
            if weight.const_value is not None and weight.const_value.dtype == ir.DataType.FLOAT and len(weight.shape) == 2:
                weight.const_value = ir.tensor(weight.const_value.numpy() * 2)
        return model, counts

    monkeypatch.setattr(ort_fusions, "optimize_for_ort", wrong)
    runner, artifact, named, expected = build(_recipe("ort-fusions"), _bert(), _inputs())
    notes = artifact.notes[NAME]
    assert notes["dropped"]["onnxscript"].startswith("output last_hidden_state differs from the unfused graph's by ")
    assert set(notes["fused_by"]) == {"onnxruntime"}
    # ONNX Runtime's optimizer, written for TorchScript exports, finds no attention in a dynamo one.
    assert notes["fused_operators"] == {"BiasGelu": LAYERS, "SkipLayerNormalization": 2 * LAYERS}
    _assert_matches_eager(runner, artifact, named, expected)


@pytest.mark.slow
def test_gpt2_gets_onnx_runtimes_fast_gelu_and_keeps_its_answers():
    """GPT-2's tanh GELU is a pattern only ONNX Runtime's optimizer fuses (FastGelu computes
    exactly that formula), whatever onnxscript makes of its attention."""
    config = transformers.GPT2Config(n_embd=32, n_layer=LAYERS, n_head=2, vocab_size=100, n_positions=64,
                                     use_cache=False, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = transformers.GPT2Model(config).eval()
    runner, artifact, named, expected = build(_recipe("ort-fusions"), model, (_inputs()[0],))
    notes = artifact.notes[NAME]
    assert notes["fused_by"]["onnxruntime"]["FastGelu"] == LAYERS
    _assert_matches_eager(runner, artifact, named, expected)
