"""A full pickle: refused without --trust-pickle; with it, unpickled only in a child process
(never in this one), converted to a torch.export program, and the opt-in recorded in the run."""

from __future__ import annotations

import hashlib
import os
import sys
import textwrap

import pytest
import torch

import hone
from hone.cli.app import main
from hone.errors import InputError, UnsafeModel
from hone.models import load_model

# Unpickling a SentinelNet writes the unpickling process's pid to the file it names: a pickle
# that shows where it was opened. Importing the module (to build one) writes nothing.
SENTINEL_MODULE = '''
import os
import torch


class SentinelNet(torch.nn.Module):
    def __init__(self, sentinel):
        super().__init__()
        self.sentinel = sentinel
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x, mask=None):
        return {"y": self.fc(x) * mask, "norm": x.norm(dim=-1)}

    def __setstate__(self, state):
        with open(state["sentinel"], "w") as f:
            f.write(str(os.getpid()))
        super().__setstate__(state)
'''


# Unpickling a ForkingNet forks a process that sleeps for ten minutes holding what it inherited
# (the child's stdout and stderr among them), and writes that process's pid to the file it names.
FORKING_MODULE = '''
import os
import time
import torch


class ForkingNet(torch.nn.Module):
    def __init__(self, pidfile):
        super().__init__()
        self.pidfile = pidfile
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(x)

    def __setstate__(self, state):
        pid = os.fork()
        if pid == 0:
            time.sleep(600)
            os._exit(0)
        with open(state["pidfile"], "w") as f:
            f.write(str(pid))
        super().__setstate__(state)
'''


def _importable(tmp_path_factory, name: str, source: str):
    folder = tmp_path_factory.mktemp("code")
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(folder))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(folder))  # the child finds it through the path the request carries


@pytest.fixture(scope="module")
def sentinel_net(tmp_path_factory):
    """The SentinelNet class, from a module the child finds through sys.path as this process does."""
    folder = tmp_path_factory.mktemp("code")
    (folder / "hone_test_sentinel_net.py").write_text(textwrap.dedent(SENTINEL_MODULE))
    sys.path.insert(0, str(folder))
    import hone_test_sentinel_net

    yield hone_test_sentinel_net.SentinelNet
    sys.path.remove(str(folder))
    sys.modules.pop("hone_test_sentinel_net", None)


def _pickle(tmp_path, obj, name="model.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_what_the_unpickled_code_forks_ends_with_the_child_and_holds_nothing_up(tmp_path, tmp_path_factory, monkeypatch):
    import threading
    import psutil

    module = _importable(tmp_path_factory, "hone_test_forking_net", FORKING_MODULE)
    monkeypatch.syspath_prepend(os.path.dirname(module.__file__))
    pidfile = tmp_path / "forked-pid"
    path = _pickle(tmp_path, module.ForkingNet(str(pidfile)))
    loaded = []
    loading = threading.Thread(target=lambda: loaded.append(load_model(str(path), trust_pickle=True,
                                                                       input_shapes=["x=2x8"])), daemon=True)
    loading.start()
    loading.join(timeout=180)
    assert not loading.is_alive(), "the load waited on a process the unpickled code forked"
    assert loaded and pidfile.exists()
    forked = int(pidfile.read_text())
    assert not psutil.pid_exists(forked) or psutil.Process(forked).status() == psutil.STATUS_ZOMBIE


def test_refused_without_the_flag_and_nothing_is_unpickled(tmp_path, sentinel_net, capsys):
    sentinel = tmp_path / "unpickled-by"
    path = _pickle(tmp_path, sentinel_net(str(sentinel)))
    with pytest.raises(UnsafeModel, match="a pickle file") as err:
        load_model(str(path), input_shapes=["x=2x8", "mask=2x4"])
    assert "--trust-pickle" in err.value.hint and "planned" not in err.value.hint
    assert main(["optimize", str(path)]) == 2
    assert "--trust-pickle" in capsys.readouterr().err
    assert not sentinel.exists()


def test_with_the_flag_only_a_child_process_unpickles(tmp_path, sentinel_net):
    sentinel = tmp_path / "unpickled-by"
    original = sentinel_net(str(sentinel)).eval()
    path = _pickle(tmp_path, original)
    workload = load_model(str(path), trust_pickle=True, input_shapes=["x=2x8", "mask=2x4"])
    assert sentinel.exists() and int(sentinel.read_text()) != os.getpid()  # the child ran it, not us
    assert [s.label for s in workload.input_sets] == ["bs2"] and workload.input_names == ["x", "mask"]
    inputs = workload.input_set("bs2").tensors
    assert inputs["x"].dtype == torch.float32 and inputs["mask"].dtype == torch.int64  # the documented rule
    with torch.no_grad():
        torch.testing.assert_close(workload.module(**inputs)["y"], original(**inputs)["y"])
    provenance = workload.provenance
    assert provenance["trust_pickle"] is True and provenance["format"] == "pickle"
    assert provenance["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert provenance["pickled_class"] == "hone_test_sentinel_net.SentinelNet" and provenance["batch"] == "dynamic"
    assert [s.batch_size for s in load_model(str(path), trust_pickle=True, batch_sizes=(1, 3),
                                             input_shapes=["x=2x8", "mask=2x4"]).input_sets] == [1, 3]


def test_without_input_shapes_the_error_names_the_forward_inputs(tmp_path, sentinel_net):
    path = _pickle(tmp_path, sentinel_net(str(tmp_path / "s")))
    with pytest.raises(InputError, match=r"forward\(x, mask=None\)") as err:
        load_model(str(path), trust_pickle=True)
    assert "--input-shape x=" in err.value.hint
    with pytest.raises(InputError, match=r"names \['pixels'\]"):
        load_model(str(path), trust_pickle=True, input_shapes=["pixels=1x3"])
    with pytest.raises(InputError, match="misses"):  # x is required
        load_model(str(path), trust_pickle=True, input_shapes=["mask=1x4"])


def test_a_checkpoint_dict_and_what_is_not_a_model(tmp_path, sentinel_net):
    path = _pickle(tmp_path, {"model": sentinel_net(str(tmp_path / "s")), "epoch": 3})
    workload = load_model(str(path), trust_pickle=True, input_shapes=["x=1x8", "mask=1x4"])
    assert workload.provenance["module_key"] == "model"
    weights = _pickle(tmp_path, {"fc.weight": torch.zeros(4, 8)}, "weights.pth")
    with pytest.raises(InputError, match="state dict"):
        load_model(str(weights), trust_pickle=True, input_shapes=["x=1x8"])
    with pytest.raises(InputError, match="holds a list"):
        load_model(str(_pickle(tmp_path, [1, 2], "list.pkl")), trust_pickle=True, input_shapes=["x=1x8"])


@pytest.mark.slow
def test_optimize_a_trusted_pickle(tmp_path, sentinel_net):
    path = _pickle(tmp_path, sentinel_net(str(tmp_path / "s")))
    result = hone.optimize(str(path), trust_pickle=True, input_shapes=["x=2x8", "mask=2x4"], recipes=["onnxruntime"],
                           store=tmp_path / "runs.db", progress=False, measure_time_s=0.2)
    assert {r.recipe.label: r.status.value for r in result.results} == {"eager": "ok", "onnxruntime": "ok"}, \
        [(r.recipe.label, r.reason) for r in result.results]
    assert result.run.provenance["trust_pickle"] is True
    assert result.run.provenance["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
