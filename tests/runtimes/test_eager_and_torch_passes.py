import torch

from hone.config import NoConfig
from hone.passes.torch.bf16_autocast import Bf16Autocast
from hone.passes.torch.channels_last import ChannelsLast
from hone.runtimes.eager import Eager
from hone.search.recipe import Recipe, Step
from harness import assert_recipe_preserves_outputs, build, this_cpu
from tiny_models import TinyConv, tiny_mlp

EAGER = Step("eager", NoConfig())


def test_eager_is_exact():
    model, x = tiny_mlp()
    runner = assert_recipe_preserves_outputs(Recipe("eager", (), EAGER), model, x)
    assert torch.equal(runner(x)[0], model(x))
    assert runner.serves((torch.randn(7, 32),))  # a module takes any batch


def test_eager_is_the_baseline():
    (recipe,) = Eager.propose(None, None, "cpu")
    assert (recipe.label, recipe.cost, recipe.passes) == ("eager", 1.0, ())
    assert recipe.baseline and recipe.origin == "reference: eager fp32"
    assert Eager.default_for == Eager.consumes == ("torch", "torch-eager-only", "torchscript")


def test_bf16_autocast_computes_in_bf16():
    model, x = tiny_mlp()
    recipe = Bf16Autocast.propose(None, this_cpu(), "cpu")[0]
    assert (recipe.label, recipe.compute_dtype, recipe.runtime) == ("bf16", "bfloat16", EAGER)  # was eager-bf16
    runner, artifact, named, _ = build(recipe, model, x)
    assert artifact.compute_dtype == "bfloat16"
    assert artifact.notes["bf16_autocast"]["autocast"] == "bfloat16"
    (variant,) = Bf16Autocast.variants(None, None, "cpu")
    assert variant.pays_for == ("memory", "compute") and variant.addresses["memory"].unit == "bf16"
    assert runner(*named.values())[0].dtype == torch.bfloat16
    assert_recipe_preserves_outputs(recipe, model, x)


def test_channels_last_is_offered_for_image_inputs_and_gives_its_trait():
    from hone.models.workload import InputSet, Workload

    images = Workload("conv", TinyConv(), [InputSet("bs2", {"pixels": torch.randn(2, 3, 8, 8)})])
    tokens = Workload("mlp", tiny_mlp()[0], [InputSet("bs4", {"x": torch.randn(4, 32)})])
    (variant,) = ChannelsLast.variants(images, None, "cpu")
    assert variant.gives == frozenset({"channels_last"}) and ChannelsLast.stage == "layout"
    assert ChannelsLast.variants(tokens, None, "cpu") == []
    (recipe,) = ChannelsLast.propose(images, None, "cpu")
    assert (recipe.label, recipe.runtime) == ("channels-last", EAGER)


def test_channels_last_converts_weights_and_keeps_answers():
    torch.manual_seed(0)
    model, x = TinyConv().eval(), torch.randn(2, 3, 8, 8)
    recipe = Recipe("channels-last", (Step("channels_last", NoConfig()),), EAGER)
    runner, artifact, _, _ = build(recipe, model, x)
    assert runner.report()["steps"]["channels_last"]["memory_format"] == "channels_last"
    conv = artifact.module.module.module.conv  # ChannelsLastModule -> FlatIO -> TinyConv
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert_recipe_preserves_outputs(recipe, model, x)
