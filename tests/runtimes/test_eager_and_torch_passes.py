import torch

from hone.config import NoConfig
from hone.passes.torch.bf16_autocast import Bf16Autocast
from hone.search.recipe import Recipe, Step
from harness import assert_recipe_preserves_outputs, build, this_cpu
from tiny_models import TinyConv, tiny_mlp

EAGER = Step("eager", NoConfig())


def test_eager_is_exact():
    model, x = tiny_mlp()
    runner = assert_recipe_preserves_outputs(Recipe("eager", (), EAGER), model, x)
    assert torch.equal(runner(x)[0], model(x))


def test_bf16_autocast_computes_in_bf16():
    model, x = tiny_mlp()
    recipe = Bf16Autocast.propose(None, this_cpu(), "cpu")[0]
    runner, artifact, named, _ = build(recipe, model, x)
    assert artifact.compute_dtype == "bfloat16"
    assert runner(*named.values())[0].dtype == torch.bfloat16
    assert_recipe_preserves_outputs(recipe, model, x)


def test_channels_last_converts_weights_and_keeps_answers():
    torch.manual_seed(0)
    model, x = TinyConv().eval(), torch.randn(2, 3, 8, 8)
    recipe = Recipe("channels-last", (Step("channels_last", NoConfig()),), EAGER)
    runner, artifact, _, _ = build(recipe, model, x)
    conv = artifact.module.module.module.conv  # ChannelsLastModule -> FlatIO -> TinyConv
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert_recipe_preserves_outputs(recipe, model, x)
