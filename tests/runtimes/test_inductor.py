import torch

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


def test_a_new_batch_size_recompiles_with_the_build_s_freezing():
    import torch._inductor.config as inductor_config
    from torch._inductor.utils import run_and_get_code

    model, x = tiny_mlp()  # batch 4
    runner = assert_recipe_preserves_outputs(Recipe("inductor", (), Step("inductor", InductorConfig(freezing=True))), model, x)
    assert inductor_config.freezing is False  # outside the build, Inductor's default
    other = torch.randn(3, 32)
    assert runner.serves((other,))
    got, code = run_and_get_code(runner, other)
    assert "_frozen_param" in "\n".join(code)  # compiled for batch 3, weights frozen as for batch 4
    torch.testing.assert_close(got[0], model(other), rtol=1e-4, atol=1e-4)
    assert inductor_config.freezing is False


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


class PrintsInForward(torch.nn.Module):
    """Two graph breaks: a print Dynamo cannot trace, then a branch on a tensor's value."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)

    def forward(self, x):
        y = self.fc(x)
        print("", end="")
        if y.sum() > 0:
            return y + 1
        return y - 1


def test_graph_breaks_are_counted_and_explained():
    model, x = PrintsInForward().eval(), torch.randn(2, 8)
    runner = assert_recipe_preserves_outputs(Recipe("inductor", (), Step("inductor", InductorConfig())), model, x)
    info = runner.info()
    assert info["graph_break_count"] == 2 and info["graph_count"] == 3
    assert "print" in info["break_reasons"][0] and "test_inductor.py" in info["break_reasons"][0]
    assert info["compile_s"] > 0
    (summary,) = runner.summary()  # what reports show: the first reason, on one line, cut at 120
    first = " ".join(info["break_reasons"][0].split())
    assert summary == f"graph breaks 2 (first: {first if len(first) <= 120 else first[:119] + '…'})"


def test_a_model_without_breaks_says_so_in_its_summary():
    model, x = tiny_mlp()
    runner = assert_recipe_preserves_outputs(Recipe("inductor", (), Step("inductor", InductorConfig())), model, x)
    assert runner.summary() == ["graph breaks 0"]
    assert runner.serves((torch.randn(7, 32),))  # a compiled module recompiles for a new shape


def test_fullgraph_refuses_a_model_with_graph_breaks_naming_the_first():
    from hone.errors import Unsupported
    from harness import build

    with pytest.raises(Unsupported, match=r"fullgraph=True, but the model has 2 graph break\(s\); first: .*print"):
        build(Recipe("inductor", (), Step("inductor", InductorConfig(fullgraph=True))), PrintsInForward().eval(),
              torch.randn(2, 8))


def test_proposals_per_device_and_their_costs(hardware):
    cpu = {r.label: r for r in Inductor.propose(None, hardware, "cpu")}
    assert set(cpu) == {"inductor", "inductor-dynamic", "inductor-unfrozen", "inductor-max-autotune"}
    assert cpu["inductor-max-autotune"].cost > cpu["inductor"].cost  # the budget plans autotuning as expensive
    cuda = {r.label for r in Inductor.propose(None, hardware, "cuda")}
    assert {"inductor-reduce-overhead", "inductor-max-autotune-no-cudagraphs"} <= cuda
    assert {label: r.cost for label, r in cpu.items()} == {
        "inductor": 2.5, "inductor-dynamic": 2.5, "inductor-unfrozen": 2.5, "inductor-max-autotune": 8.0}


def test_variants_declare_what_they_take_and_address():
    assert Inductor.consumes == ("torch", "torch-quantized") and Inductor.default_for == ("torch-quantized",)
    assert "channels_last" in Inductor.keeps and Inductor.accepts_dtypes == ("*",)
    default, *others = Inductor.variants(None, None, "cpu", "torch")
    assert default.tag == "inductor" and default.stack and not any(v.stack for v in others)
    assert set(default.addresses) == {"overhead", "memory", "compute"}
    cuda = {v.tag: v for v in Inductor.variants(None, None, "cuda", "torch")}
    assert cuda["inductor-reduce-overhead"].addresses["overhead"].weight == 1.0
    assert all(v.config.freezing for tag, v in cuda.items() if tag != "inductor-unfrozen")
    assert not cuda["inductor-unfrozen"].config.freezing  # torch.compile's own defaults
    assert "compute" not in cuda["inductor-unfrozen"].addresses  # no pre-packed GEMMs
    # A quantized model on CUDA: torchao's tensor-subclass weights need nothing folded.
    assert not any(v.config.freezing for v in Inductor.variants(None, None, "cuda", "torch-quantized"))
    assert all(v.config.freezing for v in Inductor.variants(None, None, "cpu", "torch-quantized"))  # pt2e needs it


def test_dynamic_compile_serves_a_second_batch_size_without_recompiling():
    import torch._dynamo.utils as dynamo_utils

    model, x = tiny_mlp()
    runner = assert_recipe_preserves_outputs(
        Recipe("inductor-dynamic", (), Step("inductor", InductorConfig(dynamic=True))), model, x
    )
    dynamo_utils.counters.clear()
    got = runner(torch.randn(7, 32))[0]  # made outside inference mode, as the sweep's inputs are
    assert got.shape == (7, 10)
    assert not dynamo_utils.counters["stats"].get("unique_graphs")  # no new graph for batch 7
