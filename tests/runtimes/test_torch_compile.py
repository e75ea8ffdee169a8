"""torch.compile with a third-party backend (OpenVINO's here): offered when the package that
registers it is installed, pinned to f32, and what compiled is read back."""

from __future__ import annotations

import pytest

from hone._optional import is_available
from hone.errors import InputError, Unsupported
from hone.runtimes.torch_compile import TorchCompile, TorchCompileConfig, registered_backends
from hone.search.recipe import Recipe, Step
from harness import assert_recipe_preserves_outputs, build
from tiny_models import tiny_mlp


def test_config_rejects_inductor_which_has_its_own_runtime():
    with pytest.raises(InputError, match="`inductor` runtime"):
        TorchCompileConfig(backend="inductor")
    config = TorchCompileConfig(backend="openvino", dynamic=True)
    assert TorchCompileConfig.from_dict(config.to_dict()) == config


def test_an_absent_backend_is_unsupported_with_the_install_hint():
    model, x = tiny_mlp()
    with pytest.raises(Unsupported, match=r"no torch.compile backend 'tensorrt' here \(pip install torch_tensorrt\)"):
        build(Recipe("t", (), Step("torch_compile", TorchCompileConfig(backend="tensorrt"))), model, x)


@pytest.mark.skipif(not is_available("openvino"), reason="requires openvino (hone[openvino])")
def test_openvino_backend_is_proposed_found_without_import_and_runs_f32(hardware):
    assert registered_backends()["openvino"] == "openvino"  # from package metadata, nothing imported
    labels = {r.label for r in TorchCompile.propose(None, hardware, "cpu")}
    assert "compile-openvino" in labels
    assert "compile-openvino" not in {r.label for r in TorchCompile.propose(None, hardware, "cuda")}
    model, x = tiny_mlp()
    runner = assert_recipe_preserves_outputs(Recipe("t", (), Step("torch_compile", TorchCompileConfig())), model, x)
    info = runner.info()
    assert info["openvino_partitions"] >= 1 and info["inference_precision"] == ["f32"]
    assert info["graph_break_count"] == 0 and info["compile_s"] > 0
