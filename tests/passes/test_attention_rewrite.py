"""The attention passes: sdpa_rewrite (hand-written attention in the exported graph becomes
scaled_dot_product_attention) and hf_attention (a transformers model switched between eager
and SDPA attention). Both are one file each and compose with runtimes that know nothing of them."""

from __future__ import annotations

import pytest
import torch

from hone.config import NoConfig
from hone.errors import Unsupported
from hone.models.workload import FlatIO, InputSet, Workload
from hone.passes.torch.sdpa_rewrite import SDPA, SdpaRewrite, count_sdpa
from hone.plugin import Artifact, BuildContext
from hone.search.compose import Composer
from hone.search.recipe import Recipe, Step
from harness import assert_recipe_preserves_outputs, build
from tiny_models import HandWrittenAttention, TimeMajorRecognizer, TinyConv, attention_inputs, tiny_mlp

SDPA_ON_EAGER = Recipe("sdpa", (Step("sdpa_rewrite", NoConfig()),), Step("eager", NoConfig()))
# Variant -> the mask form the rewrite passes to SDPA (None: no mask).
MATCHED = {"mul": "none", "div": "none", "prescaled": "none", "bmm": "none", "additive": "additive",
           "masked_fill": "masked", "where": "attend", "causal": "masked"}
LEFT_ALONE = {
    "wrong_dim": "softmax over dim -2 of a 4-d tensor, not the last",
    "mask_after_softmax": "the softmax output goes through mul.Tensor before the matmul with v",
    "tensor_scale": "the scores are multiplied by a tensor, not a constant",
    "returns_weights": "the attention probabilities are used more than once",
    "finite_fill": "the mask fills -10000.0, not -inf",
    "scale_after_mask": "the scores are scaled after the additive mask is added",
}


def _softmaxes(module: torch.nn.Module) -> int:
    graph = next(m for m in module.modules() if isinstance(m, torch.fx.GraphModule)).graph
    return sum(1 for n in graph.nodes if n.op == "call_function" and "softmax" in str(n.target))


def _sdpa_node(module: torch.nn.Module) -> torch.fx.Node:
    graph = next(m for m in module.modules() if isinstance(m, torch.fx.GraphModule)).graph
    (node,) = [n for n in graph.nodes if n.op == "call_function" and n.target is SDPA]
    return node


@pytest.mark.parametrize("variant", sorted(MATCHED))
def test_the_rewrite_fires_on_hand_written_attention_and_keeps_fp32_outputs(variant):
    model, inputs = HandWrittenAttention(variant).eval(), attention_inputs()
    runner = assert_recipe_preserves_outputs(SDPA_ON_EAGER, model, inputs)
    artifact_module = runner.module
    assert count_sdpa(artifact_module) == 1 and _softmaxes(artifact_module) == 0  # replaced, not added beside
    notes = runner.report()["steps"]["sdpa_rewrite"]
    assert notes["attention_blocks"] == notes["sdpa_nodes"] == 1 and notes["masks"] == {MATCHED[variant]: 1}
    assert notes["scales"] == [pytest.approx(1.0 if variant == "prescaled" else 8 ** -0.5, abs=1e-6)]
    # The fused CPU kernel ran, read back from the profiler (3-D attention is given a batch dim for it).
    assert notes["sdpa_backend"] == "flash (CPU)" and notes["sdpa_calls"] == {"flash (CPU)": 1}


@pytest.mark.parametrize("variant", ["additive", "masked_fill", "where", "causal"])
def test_masks_keep_their_meaning_where_they_matter(variant):
    """SDPA's boolean mask means True = attend; masked_fill's True = masked. The inputs make
    the mask decide: sample 0 keeps 5 of 8 keys, so its outputs differ from unmasked attention,
    and sample 1 keeps every key, so a flipped polarity would leave it none (NaN rows)."""
    model, (x, keep) = HandWrittenAttention(variant).eval(), attention_inputs()
    unmasked = HandWrittenAttention("mul").eval()
    runner, _, _, expected = build(SDPA_ON_EAGER, model, (x, keep))
    with torch.no_grad():
        assert not torch.allclose(unmasked(x, keep)[0], expected["output"][0], atol=1e-3)  # the mask decides
        # A new batch size and a new mask: the mask stays an input of the graph, not a constant.
        x3, keep3 = torch.randn(3, 8, 32), torch.ones(3, 8, dtype=torch.int64)
        keep3[1, 2:] = 0
        keep3[2, :6] = 0
        for args in ((x, keep), (x3, keep3)):
            torch.testing.assert_close(runner(*args)[0], model(*args), rtol=1e-5, atol=1e-5)
    mask = _sdpa_node(runner.module).args[3]
    negated = mask.target is torch.ops.aten.logical_not.default
    assert negated == (MATCHED[variant] == "masked")  # masked_fill(m, -inf) passes not(m); where(m, s, -inf) passes m


@pytest.mark.parametrize("variant", sorted(LEFT_ALONE))
def test_what_is_not_exactly_attention_is_left_alone_with_the_reason(variant, tmp_path):
    model, inputs = HandWrittenAttention(variant).eval(), attention_inputs()
    outputs = ["output_0", "output_1"] if variant == "returns_weights" else ["output"]
    ctx = BuildContext(inputs, ["x", "keep"], outputs, tmp_path, 1)
    with pytest.raises(Unsupported, match="no hand-written attention matched") as caught:
        SdpaRewrite().apply(Artifact("torch", FlatIO(model, ["x", "keep"], outputs).eval()), ctx)
    assert LEFT_ALONE[variant] in str(caught.value) and "\n" not in str(caught.value)


def test_a_model_without_attention_is_not_proposed_and_not_rewritten(tmp_path):
    mlp, x = tiny_mlp()
    workloads = {
        "mlp": Workload("mlp", mlp, [InputSet("bs4", {"x": x})]),
        "conv": Workload("conv", TinyConv(), [InputSet("bs2", {"pixels": torch.randn(2, 3, 8, 8)})]),
        # log_softmax over classes is no attention
        "recognizer": Workload("ctc", TimeMajorRecognizer(), [InputSet("bs2", {"image": torch.randn(2, 1, 8, 12)})]),
    }
    for name, workload in workloads.items():
        assert SdpaRewrite.variants(workload, None, "cpu") == [], name
    attention = Workload("attention", HandWrittenAttention(), [InputSet("bs2", dict(zip(("x", "keep"), attention_inputs())))])
    assert [v.tag for v in SdpaRewrite.variants(attention, None, "cpu")] == ["sdpa"]
    # Asked for anyway (a recipe on the command line), it says so instead of returning the model.
    ctx = BuildContext((x,), ["x"], ["output"], tmp_path, 1)
    with pytest.raises(Unsupported, match="no hand-written attention matched: the graph has no softmax"):
        SdpaRewrite().apply(Artifact("torch", FlatIO(mlp, ["x"], ["output"]).eval()), ctx)


def _attention_workload(variant: str = "masked_fill") -> Workload:
    return Workload("attention", HandWrittenAttention(variant).eval(), [InputSet("bs2", dict(zip(("x", "keep"), attention_inputs())))])


def test_the_rewrite_is_stacked_onto_the_runtimes_by_the_composer(hardware):
    planned = {s.recipe.label for s in Composer(_attention_workload(), hardware, "cpu").default_stacks()}
    assert {"sdpa", "sdpa+inductor"} <= planned, sorted(planned)
    recipe = Composer(_attention_workload(), hardware, "cpu").parse("sdpa").recipe
    assert [s.name for s in recipe.passes] == ["sdpa_rewrite"] and recipe.runtime.name == "eager"


def test_the_eager_build_saves_and_loads_with_the_sdpa_node(tmp_path):
    from hone.runtimes.eager import Eager

    model, inputs = HandWrittenAttention("masked_fill").eval(), attention_inputs()
    runner, _, named, _ = build(SDPA_ON_EAGER, model, inputs)
    files = runner.save(tmp_path)
    ctx = BuildContext(tuple(named.values()), list(named), ["output"], tmp_path, 1)
    loaded = Eager().load(tmp_path, files, ctx)
    assert count_sdpa(loaded.module.program) == 1
    torch.testing.assert_close(loaded(*named.values())[0], runner(*named.values())[0], rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["sdpa+inductor", "sdpa+onnxruntime"])
def test_the_rewritten_model_composes_with_other_runtimes(hardware, stack):
    """No runtime has code for SDPA graphs: Inductor compiles the rewritten module, the ONNX
    exporter lowers its SDPA node (opset 18: as MatMul/Softmax; no fused Attention op)."""
    if stack.endswith("onnxruntime"):
        pytest.importorskip("onnxruntime")
    workload = _attention_workload("masked_fill")
    recipe = Composer(workload, hardware, "cpu").parse(stack).recipe
    runner = assert_recipe_preserves_outputs(recipe, workload.module, attention_inputs())
    assert runner.report()["steps"]["sdpa_rewrite"]["attention_blocks"] == 1


# --- transformers: attn_implementation ------------------------------------------------------------------

TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100)


def _tiny_bert(attn_implementation: str | None = None):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    return transformers.AutoModel.from_config(transformers.BertConfig(**TINY_BERT), **kwargs).eval()


def _bert_inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    mask = torch.ones(2, 16, dtype=torch.int64)
    mask[0, 10:] = 0  # padding that matters
    return {"input_ids": torch.randint(0, 100, (2, 16), generator=generator), "attention_mask": mask}


def _bert_workload(model) -> Workload:
    return Workload("bert", model, [InputSet("bs2", _bert_inputs())])


def test_transformers_defaults_to_sdpa_so_neither_pass_is_planned_there():
    from hone.passes.torch.hf_attention import HfAttention

    model = _tiny_bert()
    assert model.config._attn_implementation == "sdpa"  # what hone's loaders get (from_config, from_pretrained)
    assert HfAttention.variants(_bert_workload(model), None, "cpu") == []
    assert SdpaRewrite.variants(_bert_workload(model), None, "cpu") == []  # already SDPA: nothing to rewrite


def test_asked_to_rewrite_an_sdpa_bert_it_says_there_is_nothing_to_do():
    model = _tiny_bert()
    with pytest.raises(Unsupported, match=r"the graph has no softmax; its attention already is scaled_dot_product_attention \(2 calls\)"):
        build(SDPA_ON_EAGER, model, _bert_inputs())


def test_an_eager_bert_is_switched_to_sdpa_and_the_backend_read_back():
    from hone.passes.torch.hf_attention import HfAttention

    model = _tiny_bert("eager")
    (variant,) = HfAttention.variants(_bert_workload(model), None, "cpu")
    assert variant.tag == "hf-attn-sdpa" and variant.config.implementation == "sdpa"
    recipe = Recipe("hf-attn-sdpa", (Step("hf_attention", variant.config),), Step("eager", NoConfig()))
    runner = assert_recipe_preserves_outputs(recipe, model, _bert_inputs())
    notes = runner.report()["steps"]["hf_attention"]
    assert notes["switched"] == ["BertModel: eager -> sdpa"]
    assert notes["sdpa_backend"] == "flash (CPU)" and notes["sdpa_calls"] == {"flash (CPU)": 2}  # one per layer
    assert model.config._attn_implementation == "eager"  # the caller's model is not switched under it


def test_an_eager_bert_is_rewritten_by_the_graph_pass_too():
    model = _tiny_bert("eager")
    assert [v.tag for v in SdpaRewrite.variants(_bert_workload(model), None, "cpu")] == ["sdpa"]
    runner = assert_recipe_preserves_outputs(SDPA_ON_EAGER, model, _bert_inputs())
    notes = runner.report()["steps"]["sdpa_rewrite"]
    assert notes["attention_blocks"] == 2 and notes["masks"] == {"additive": 2} and notes["scales"] == [0.25]


def test_switching_to_eager_is_a_config_and_runs_no_sdpa(tmp_path):
    from hone.passes.torch.hf_attention import HfAttention, HfAttentionConfig

    model, inputs = _tiny_bert(), _bert_inputs()
    names = list(inputs)
    ctx = BuildContext(tuple(inputs.values()), names, ["last_hidden_state", "pooler_output"], tmp_path, 1)
    flat = FlatIO(model, names, ctx.output_names).eval()
    switched = HfAttention(HfAttentionConfig("eager")).apply(Artifact("torch", flat), ctx)
    notes = switched.notes["hf_attention"]
    assert notes["switched"] == ["BertModel: sdpa -> eager"] and notes["sdpa_calls"] == {}
    with torch.no_grad():
        torch.testing.assert_close(switched.module(*inputs.values()), flat(*inputs.values()), rtol=1e-5, atol=1e-5)
    with pytest.raises(Unsupported, match="already uses sdpa attention"):
        HfAttention(HfAttentionConfig("sdpa")).apply(Artifact("torch", flat), ctx)
