"""The `openvino` runtime's own candidates (fp32 LATENCY, fp32 THROUGHPUT, declared bf16): each
converts, compiles, reads back what the plugin settled on, and saves its IR."""

from __future__ import annotations

import dataclasses

import pytest

import torch

from hone._optional import is_available
from hone.runtimes.openvino import OpenVino
from harness import assert_recipe_preserves_outputs
from tiny_models import TinyConv, tiny_mlp

pytestmark = pytest.mark.skipif(not is_available("openvino"), reason="requires openvino (hone[openvino])")


def _recipes(hardware) -> dict:
    return {r.label: r for r in OpenVino.propose(None, hardware, "cpu")}


def test_candidates_per_hardware(hardware):
    with_bf16 = dataclasses.replace(hardware, flags=hardware.flags | {"avx512_bf16"})
    without = dataclasses.replace(hardware, flags=frozenset(f for f in hardware.flags if "bf16" not in f))
    # bf16 on every CPU: the plugin decides where it computes bf16, and hone reads that back.
    assert set(_recipes(with_bf16)) == set(_recipes(without)) == {"openvino", "openvino-throughput", "openvino-bf16"}
    assert _recipes(with_bf16)["openvino-bf16"].compute_dtype == "bfloat16"  # declared, not silent
    assert OpenVino.propose(None, hardware, "cuda") == []  # OpenVINO's GPU plugin is Intel's
    assert {label: r.cost for label, r in _recipes(hardware).items()} == {
        "openvino": 2.0, "openvino-throughput": 2.0, "openvino-bf16": 2.0}
    assert [v.stack for v in OpenVino.variants(None, None, "cpu", "openvino")] == [True, False, False]


@pytest.mark.parametrize("label, hint", [("openvino", "LATENCY"), ("openvino-throughput", "THROUGHPUT")])
def test_f32_candidates_are_exact_and_read_back_their_hint(hardware, label, hint):
    model, x = tiny_mlp()
    runner = assert_recipe_preserves_outputs(_recipes(hardware)[label], model, x)
    info = runner.info()
    assert info["inference_precision"] == "f32" and info["performance_hint"] == hint
    assert runner.compute_dtype is None  # validated at fp32 tolerance
    if hint == "THROUGHPUT":
        assert info["num_streams"] >= 1
    # The IR is static; another batch is the same IR recompiled at its shape on first use.
    other = torch.randn(3, 32)
    assert runner.serves((x,)) and runner.serves((other,)) and not runner.serves((torch.randn(3, 16),))
    torch.testing.assert_close(runner(other)[0], model(other), rtol=1e-4, atol=1e-4)
    assert runner(x)[0].shape[0] == x.shape[0]  # and back: each shape keeps its own compiled model


def test_bf16_candidate_runs_bf16_where_the_plugin_can_and_says_so_where_it_cannot(hardware):
    import openvino as ov
    import torch

    from hone.errors import Unsupported

    torch.manual_seed(0)
    recipe, model, x = _recipes(hardware)["openvino-bf16"], TinyConv().eval(), torch.randn(2, 3, 8, 8)
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        # The plugin settles on f32 here: read back, and refused rather than run as "bf16".
        with pytest.raises(Unsupported, match="runs f32, not the requested bf16"):
            assert_recipe_preserves_outputs(recipe, model, x)
        return
    runner = assert_recipe_preserves_outputs(recipe, model, x)
    assert runner.info()["inference_precision"] == "bf16"
    assert runner.compute_dtype == "bfloat16"
    assert any(key.endswith("bf16") or "/bf16/" in key for key in runner.info()["compute_ops"])


def test_two_streams_split_a_batch_across_two_requests_and_give_the_same_answers(hardware):
    from hone.runtimes.openvino import OpenVinoConfig
    from hone.search.recipe import Recipe, Step
    from harness import build

    plain = _recipes(hardware)["openvino"]
    streams = Recipe("openvino-2-streams", plain.passes,
                     Step("openvino", OpenVinoConfig(performance_hint="THROUGHPUT", streams=2)))
    model, x = tiny_mlp()
    runner, _, named, expected = build(streams, model, x, threads=2)
    assert runner.info()["num_streams"] == 2 and runner.requests == 2  # what the plugin made, read back
    for batch in (x, torch.randn(5, 32)):  # 5 rows: slices of 3 and 2, each its own compiled shape
        torch.testing.assert_close(runner(batch)[0], model(batch), rtol=1e-4, atol=1e-4)
    assert runner(x[:1])[0].shape == (1, 10)  # one row is not split
    # The serving knob is declared for two threads or more, and left out of a recipe's key at 0.
    assert OpenVino.serving_variants(OpenVinoConfig(), 1) == []
    assert OpenVino.serving_variants(OpenVinoConfig(), 2) == [("2 streams", {"performance_hint": "THROUGHPUT", "streams": 2})]
    assert "streams" not in OpenVinoConfig().to_dict() and OpenVinoConfig(streams=2).to_dict()["streams"] == 2
