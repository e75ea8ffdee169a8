"""The `ipex` runtime: without IPEX (or with one built for another torch) it is unavailable with
the reason (where IPEX's optimizations went, and the pip line that would run it), and a build
fails as `unsupported` without importing a mismatched IPEX. With a matching IPEX installed, the
last test builds it for real."""

import dataclasses
import importlib.metadata as metadata

import pytest
import torch

from hone.errors import InputError, Unsupported
from hone.models.workload import InputSet, Workload
from hone.runtimes.ipex import Ipex, IpexConfig, install_hint, ipex_unavailable
from hone.search.planner import plan
from hone.search.recipe import Recipe, Step
from harness import assert_recipe_preserves_outputs, build
from tiny_models import TinyMLP, tiny_mlp

IPEX = "intel-extension-for-pytorch"
REQUIRES_MATCHING_IPEX = "requires intel-extension-for-pytorch built for this torch"


def _versions(monkeypatch, **installed: str):
    """Pretend these distributions (pip names with _ for -) are installed at these versions;
    every other one looks absent."""
    versions = {name.replace("_", "-"): version for name, version in installed.items()}

    def version(distribution: str) -> str:
        if distribution not in versions:
            raise metadata.PackageNotFoundError(distribution)
        return versions[distribution]

    monkeypatch.setattr(metadata, "version", version)


def test_not_installed_says_where_its_optimizations_went_and_what_would_run_it(hardware, monkeypatch):
    _versions(monkeypatch, torch="2.13.0+cpu")
    reason = Ipex.available(hardware, "cpu")
    assert reason.startswith("intel_extension_for_pytorch is not installed. IPEX is retired upstream")
    assert "Inductor's CPU backend (freezing, oneDNN weight prepacking)" in reason
    assert "`inductor` and `pt2e-int8`" in reason
    assert "No IPEX release supports torch 2.13.0+cpu: the last, 2.8.0, needs torch 2.8" in reason
    _versions(monkeypatch, torch="2.7.1")
    assert "pip install intel-extension-for-pytorch==2.7.0 (matches torch 2.7.1)" in Ipex.available(hardware, "cpu")


def test_installed_for_another_torch_is_unavailable_with_both_versions(hardware, monkeypatch):
    _versions(monkeypatch, torch="2.13.0", intel_extension_for_pytorch="2.8.0+cpu")
    reason = Ipex.available(hardware, "cpu")
    assert reason.startswith(f"{IPEX} 2.8.0+cpu is installed but built for torch 2.8; "
                             "this environment has torch 2.13.0")
    assert "retired upstream" in reason and "needs torch 2.8" in reason
    _versions(monkeypatch, torch="2.8.0", intel_extension_for_pytorch="2.8.0+cpu")
    assert Ipex.available(hardware, "cpu") is None
    assert Ipex.available(hardware, "cuda") == "runs on cpu, not cuda"


def test_a_build_without_a_matching_ipex_is_unsupported_and_never_imports_it(monkeypatch):
    import sys

    _versions(monkeypatch, torch="2.13.0", intel_extension_for_pytorch="2.8.0")
    model, x = tiny_mlp()
    with pytest.raises(Unsupported, match="built for torch 2.8"):
        build(Recipe("ipex", (), Step("ipex", IpexConfig())), model, x)
    assert "intel_extension_for_pytorch" not in sys.modules  # its import would abort on this torch


def test_install_hint_pairs_releases_with_torch():
    assert install_hint("2.6.0") == "To run it: pip install intel-extension-for-pytorch==2.6.0 (matches torch 2.6.0)"
    assert "No IPEX release supports torch 2.5.1" in install_hint("2.5.1")


def test_config_validates_and_round_trips():
    with pytest.raises(InputError, match="dtype must be one of float32, bfloat16"):
        IpexConfig(dtype="float16")
    config = IpexConfig(dtype="bfloat16", jit=False)
    assert IpexConfig.from_dict(config.to_dict()) == config


def test_proposals_stay_in_the_plan_as_unsupported_with_or_without_bf16_units(hardware, monkeypatch):
    with_bf16 = dataclasses.replace(hardware, flags=hardware.flags | {"avx512_bf16"})
    without = dataclasses.replace(hardware, flags=hardware.flags - {"avx512_bf16", "amx_bf16"})
    assert [r.label for r in Ipex.propose(None, with_bf16, "cpu")] == ["ipex", "ipex-bf16"]
    assert [r.label for r in Ipex.propose(None, without, "cpu")] == ["ipex", "ipex-bf16"]  # bf16 emulated, not refused
    assert Ipex.propose(None, with_bf16, "cuda") == []
    (bf16,) = [r for r in Ipex.propose(None, with_bf16, "cpu") if r.label == "ipex-bf16"]
    assert bf16.compute_dtype == "bfloat16" and bf16.runtime.config.dtype == "bfloat16"
    _versions(monkeypatch, torch="2.13.0")
    workload = Workload("t", TinyMLP(), [InputSet("bs2", {"x": torch.randn(2, 32)})])
    planned = {p.recipe.label: p for p in plan(workload, with_bf16, "cpu")}
    assert planned["ipex"].unavailable.startswith("ipex: intel_extension_for_pytorch is not installed. IPEX is retired")
    assert planned["ipex-bf16"].unavailable == planned["ipex"].unavailable


class _IPEXLinear(torch.nn.Linear):
    """Stands for IPEX's prepacked Linear (same name, IPEX's module path)."""


_IPEXLinear.__module__ = "intel_extension_for_pytorch.nn.utils._weight_prepack"


@pytest.fixture
def stand_in_ipex(monkeypatch):
    """An importable `intel_extension_for_pytorch` whose optimize() swaps Linear layers for the
    class above (no prepacking): the runtime's own steps (trace, freeze, autocast, what it reads
    back, save and load) then run for real without IPEX."""
    import copy
    import importlib.machinery
    import sys
    import types

    calls = []

    def optimize(model, dtype=None, weights_prepack=None, inplace=False):
        calls.append({"dtype": dtype, "weights_prepack": weights_prepack, "inplace": inplace})
        model = copy.deepcopy(model)
        for module in model.modules():
            if type(module) is torch.nn.Linear:
                module.__class__ = _IPEXLinear
        return model

    module = types.ModuleType("intel_extension_for_pytorch")
    module.__spec__ = importlib.machinery.ModuleSpec("intel_extension_for_pytorch", None)
    module.__version__, module.optimize = "2.13.0+cpu", optimize
    monkeypatch.setitem(sys.modules, "intel_extension_for_pytorch", module)
    _versions(monkeypatch, torch="2.13.0+cpu", intel_extension_for_pytorch="2.13.0+cpu")
    return calls


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_runtime_traces_freezes_reads_back_and_saves(stand_in_ipex, dtype, tmp_path):
    model, x = tiny_mlp()
    runner = assert_recipe_preserves_outputs(Recipe("ipex", (), Step("ipex", IpexConfig(dtype=dtype))), model, x)
    torch_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    assert stand_in_ipex == [{"dtype": torch_dtype, "weights_prepack": True, "inplace": False}]
    info = runner.info()
    assert info["ipex_modules"] == {"_IPEXLinear": 2} and info["ipex_version"] == "2.13.0+cpu"
    assert info["jit_executed_ops"]["aten::linear"] == 2  # the graph TorchScript really ran
    assert runner.compute_dtype == ("bfloat16" if dtype == "bfloat16" else None)
    files = runner.save(tmp_path)
    loaded = Ipex(IpexConfig(dtype=dtype)).load(tmp_path, files, None)
    torch.testing.assert_close(loaded(x)[0], runner(x)[0])
    eager = Ipex(IpexConfig(jit=False)).build_impl(*_artifact_and_ctx(model, x))
    with pytest.raises(Unsupported, match="jit=True saves TorchScript"):
        eager.save(tmp_path)


def _artifact_and_ctx(model, x):
    import tempfile
    from pathlib import Path

    from hone.models.workload import FlatIO
    from hone.plugin import Artifact, BuildContext

    ctx = BuildContext((x,), ["x"], ["output"], Path(tempfile.mkdtemp()), 1)
    return Artifact("torch", FlatIO(model, ["x"], ["output"]).eval()), ctx


@pytest.mark.skipif(ipex_unavailable(torch.__version__) is not None, reason=REQUIRES_MATCHING_IPEX)
def test_ipex_builds_prepacks_and_keeps_answers():
    model, x = tiny_mlp()
    runner = assert_recipe_preserves_outputs(Recipe("ipex", (), Step("ipex", IpexConfig())), model, x)
    info = runner.info()
    assert info["ipex_modules"] and info["jit"] is True
    assert any(op.startswith(("ipex", "torch_ipex")) for op in info["jit_executed_ops"])
