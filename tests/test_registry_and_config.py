import dataclasses

import pytest

from hone.config import Config
from hone.errors import HoneError, InputError
from hone.registry import PASSES, RUNTIMES
from hone.runtimes.base import Runtime
from hone.search.recipe import Recipe, Step
from hone.runtimes.inductor import InductorConfig


def test_every_plugin_file_is_discovered():
    assert {"eager", "inductor", "onnxruntime"} <= set(RUNTIMES.names())
    assert {"bf16_autocast", "channels_last", "onnx_export"} <= set(PASSES.names())
    assert RUNTIMES.path("onnxruntime") == "hone.runtimes.onnxruntime:OnnxRuntime"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(InputError, match="known: .*eager"):
        RUNTIMES.get("warp")


def test_register_rejects_a_second_plugin_with_the_same_name():
    class Impostor(Runtime):
        name = "eager"

    with pytest.raises(HoneError, match="exists already"):
        RUNTIMES.register(Impostor)


@dataclasses.dataclass(frozen=True)
class SampleConfig(Config):
    VERSION = 2
    size: int = 1

    def validate(self):
        if self.size < 1:
            raise InputError("size must be positive")


def test_config_validates_round_trips_and_refuses_the_future():
    with pytest.raises(InputError):
        SampleConfig(size=0)
    data = SampleConfig(size=3).to_dict()
    assert data == {"_type": "SampleConfig", "_version": 2, "size": 3}
    assert SampleConfig.from_dict(data) == SampleConfig(size=3)
    with pytest.raises(InputError, match="newer"):
        SampleConfig.from_dict({**data, "_version": 3})
    with pytest.raises(InputError, match="no field"):
        SampleConfig.from_dict({**data, "colour": "red"})


def test_recipe_round_trips_and_its_key_ignores_the_label():
    recipe = Recipe("inductor", (), Step("inductor", InductorConfig(freezing=False)), origin="x")
    back = Recipe.from_dict(recipe.to_dict())
    assert back == recipe and back.key == recipe.key
    relabelled = dataclasses.replace(recipe, label="other", origin="y")
    assert relabelled.key == recipe.key
    assert Recipe("inductor", (), Step("inductor", InductorConfig())).key != recipe.key
