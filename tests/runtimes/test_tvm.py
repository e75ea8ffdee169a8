import json
import os
import time
from pathlib import Path

import pytest
import torch

from hone._optional import is_available
from hone.errors import InputError, Unsupported
from hone.plugin import BuildContext
from hone.search.recipe import Recipe, Step
from skips import REQUIRES_TVM
from harness import assert_recipe_preserves_outputs, build
from tiny_models import TinyConv, TinyMLP, tiny_mlp

if not is_available("tvm"):
    pytest.skip(REQUIRES_TVM, allow_module_level=True)

from hone.runtimes.tvm import DEFAULT_TUNING_TRIALS, Tvm, TvmConfig  # noqa: E402


def tvm_recipe(**config) -> Recipe:
    return Recipe("tvm", (), Step("tvm", TvmConfig(**config)))


def target_of(runner) -> dict:
    return json.loads(runner.info()["target"])


def test_mlp_untuned_keeps_answers_and_reports_the_host_target():
    import tvm

    model, x = tiny_mlp()
    info = assert_recipe_preserves_outputs(tvm_recipe(), model, x).info()
    target = json.loads(info["target"])
    assert target["kind"] == "llvm" and target["mcpu"] == tvm.target.codegen.llvm_get_system_cpu()
    assert target["num-cores"] == 1 and info["threads"] == 1  # the harness builds with 1 thread
    assert info["tir_functions"] >= 2 and info["tuned_functions"] == 0
    assert "tuning_db" not in info


def test_conv_model_with_two_outputs_keeps_answers():
    torch.manual_seed(0)
    runner = assert_recipe_preserves_outputs(tvm_recipe(), TinyConv().eval(), torch.randn(2, 3, 16, 16))
    assert runner.info()["backend"] == "tvm"


def test_threads_are_set_and_read_back_without_pinning_the_caller():
    affinity = os.sched_getaffinity(0)
    model, x = tiny_mlp()
    runner = build(tvm_recipe(), model, x, threads=2)[0]
    assert runner.info()["threads"] == 2 and target_of(runner)["num-cores"] == 2
    assert os.sched_getaffinity(0) == affinity  # TVM pins its caller unless told the thread count
    assert build(tvm_recipe(), model, x, threads=1)[0].info()["threads"] == 1  # a started pool narrows


def test_configured_target_is_the_one_used():
    model, x = tiny_mlp()
    runner = assert_recipe_preserves_outputs(tvm_recipe(target='{"kind": "llvm", "mcpu": "x86-64"}'), model, x)
    assert target_of(runner)["mcpu"] == "x86-64" and target_of(runner)["num-cores"] == 1


def test_inputs_that_are_not_contiguous_or_another_shape():
    model, x = tiny_mlp()
    runner, _, _, _ = build(tvm_recipe(), model, x)
    strided = torch.randn(32, 4).t()  # a view TVM cannot read in place
    torch.testing.assert_close(runner(strided)[0], model(strided).detach())
    with pytest.raises(Exception, match="mismatch"):  # built for batch 4: the VM checks shapes
        runner(torch.randn(3, 32))


def test_tuning_writes_a_database_that_the_next_build_reuses_and_tops_up(tmp_path):
    model, x = tiny_mlp()
    start = time.perf_counter()
    first_runner = assert_recipe_preserves_outputs(tvm_recipe(tuning_trials=4), model, x)
    first = first_runner.info()
    first_s = time.perf_counter() - start
    db = Path(first["tuning_db"])
    assert db.is_relative_to(Path(os.environ["HONE_CACHE_DIR"]) / "tvm")  # conftest points it at tmp_path
    assert (db / "database_tuning_record.json").stat().st_size > 0
    assert first["tuning_db_reused"] is False and first["tuning_trials_run"] == 4 and first["tuning_records"] == 4
    assert first["tuning_s"] > 0 and first["tuned_functions"] >= 1
    assert first["tuning_cost_model"] in ("xgb", "random")
    assert first_runner.summary() == [f"tuning {first['tuning_s']:.0f} s"]  # what reports show

    start = time.perf_counter()
    second_runner = assert_recipe_preserves_outputs(tvm_recipe(tuning_trials=4), model, x)
    second = second_runner.info()
    assert time.perf_counter() - start < first_s
    assert second["tuning_db"] == first["tuning_db"] and second["tuning_db_reused"] is True
    assert second["tuning_trials_run"] == 0 and second["tuning_s"] == 0
    assert second["tuned_functions"] == first["tuned_functions"]
    assert second_runner.summary() == []  # nothing tuned this time

    torch.manual_seed(1)  # the same architecture with other weights: schedules do not depend on them
    retrained = assert_recipe_preserves_outputs(tvm_recipe(tuning_trials=4), TinyMLP().eval(), x).info()
    assert retrained["tuning_db"] == first["tuning_db"] and retrained["tuning_trials_run"] == 0

    topped_runner = assert_recipe_preserves_outputs(tvm_recipe(tuning_trials=6), model, x)
    topped = topped_runner.info()
    assert topped["tuning_db"] == first["tuning_db"] and topped["tuning_trials_run"] == 2
    assert topped_runner.summary()[0].startswith("tuning ") and topped_runner.summary()[0].endswith("(database reused)")
    assert topped["tuning_records"] == 6


def test_save_and_load_round_trip(tmp_path):
    model, x = tiny_mlp()
    runner, _, named, _ = build(tvm_recipe(), model, x)
    files = runner.save(tmp_path)
    assert sorted(files) == ["model.so", "tvm.json"] and all((tmp_path / f).stat().st_size > 0 for f in files)
    ctx = BuildContext((), list(named), ["output"], tmp_path, 1)
    loaded = Tvm(TvmConfig()).load(tmp_path, files, ctx)
    assert torch.equal(loaded(x)[0], runner(x)[0])
    assert loaded.info()["target"] == runner.info()["target"] and loaded.info()["threads"] == 1


def test_an_op_the_frontend_cannot_convert_is_unsupported_with_its_name():
    class LogGamma(torch.nn.Module):
        def forward(self, x):
            return torch.lgamma(x)

    with pytest.raises(Unsupported, match="lgamma"):
        build(tvm_recipe(), LogGamma(), torch.rand(4) + 1)


def test_config_validates_and_round_trips():
    with pytest.raises(InputError, match="tuning_trials"):
        TvmConfig(tuning_trials=-1)
    with pytest.raises(InputError, match="JSON object"):
        TvmConfig(target="llvm -mcpu=znver4")  # TVM 0.27 parses no such strings
    with pytest.raises(InputError, match="kind must be llvm"):
        TvmConfig(target='{"kind": "cuda"}')
    config = TvmConfig(tuning_trials=16, target='{"kind": "llvm", "mcpu": "znver4"}')
    assert TvmConfig.from_dict(config.to_dict()) == config


def test_proposes_untuned_and_tuned_on_cpu_only(hardware):
    recipes = {r.label: r for r in Tvm.propose(None, hardware, "cpu")}
    assert recipes["tvm"].runtime.config.tuning_trials == 0
    assert recipes["tvm-tuned"].runtime.config.tuning_trials == DEFAULT_TUNING_TRIALS
    assert recipes["tvm-tuned"].cost >= recipes["tvm"].cost > 1
    assert Tvm.propose(None, hardware, "cuda") == []


def test_available_here_and_names_the_ffi_that_crashes(hardware, monkeypatch):
    import importlib.metadata

    assert Tvm.available(hardware, "cpu") is None
    versions = {"apache-tvm": "0.27.0.post1", "apache-tvm-ffi": "0.1.15.post2"}
    monkeypatch.setattr(importlib.metadata, "version", lambda name: versions[name])
    assert "apache-tvm-ffi==0.1.14.post1" in Tvm.available(hardware, "cpu")
