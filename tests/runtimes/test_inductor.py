import pytest

from hone.errors import InputError
from hone.runtimes.inductor import Inductor, InductorConfig
from hone.search.recipe import Recipe, Step
from harness import assert_recipe_preserves_outputs
from tiny_models import tiny_mlp


def test_inductor_with_freezing_keeps_answers_and_really_freezes():
    import torch._inductor.config as inductor_config

    before = inductor_config.freezing
    model, x = tiny_mlp()
    recipe = Recipe("inductor", (), Step("inductor", InductorConfig(freezing=True)))
    runner = assert_recipe_preserves_outputs(recipe, model, x)
    info = runner.info()
    assert info["backend"] == "inductor" and info["freezing"] is True
    assert info["weights_frozen"] is True  # read back from the generated code, not assumed
    assert inductor_config.freezing == before  # the patch was scoped to the build


def test_inductor_without_freezing_keeps_weights_as_inputs():
    model, x = tiny_mlp()
    runner = assert_recipe_preserves_outputs(Recipe("inductor", (), Step("inductor", InductorConfig(freezing=False))), model, x)
    assert runner.info()["weights_frozen"] is False


def test_config_validates_and_round_trips():
    with pytest.raises(InputError, match="mode 'turbo'"):
        InductorConfig(mode="turbo")
    config = InductorConfig(mode="max-autotune", dynamic=True)
    assert InductorConfig.from_dict(config.to_dict()) == config


def test_available_names_the_missing_compiler(hardware, monkeypatch):
    import shutil

    assert Inductor.available(hardware, "cpu") is None
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "C++ compiler" in Inductor.available(hardware, "cpu")
