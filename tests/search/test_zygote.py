"""The warm start (search.zygote): workers forked from one process that imported torch behave
as fresh interpreters do (own session, the job's environment and threads, the log as output,
no CUDA), the warm start ends with its sweep, and a warm start that cannot start or dies only
costs speed: the sweep goes on with fresh interpreters."""

from __future__ import annotations

import json
import os

import psutil

import hone
from hone.search.result import Status
from hone.search.zygote import Zygote
from plugins_for_tests import FACTS, KillsItsParentRuntime, LeavesTempToExitRuntime, ProcessFactsRuntime
from tiny_models import tiny_mlp


def _optimize(tmp_path, recipes, **kw):
    model, x = tiny_mlp()
    return hone.optimize(model, x, recipes=recipes, store=False, progress=False, measure_time_s=0.1,
                         profile_first=False, timeout_s=60, **kw)


def _status(result, label):
    return next(r for r in result.results if r.recipe.label == label)


def test_a_forked_worker_is_what_a_fresh_one_is_and_the_warm_start_ends_with_the_sweep(tmp_path, monkeypatch):
    monkeypatch.setenv(FACTS, str(tmp_path / "facts.json"))
    monkeypatch.setenv("HONE_TEST_MARKER", "set-by-this-test")
    result = _optimize(tmp_path, ["eager", ProcessFactsRuntime.recipe()], threads=1)
    assert _status(result, "test_process_facts").status is Status.OK
    facts = json.loads((tmp_path / "facts.json").read_text())

    warm_start = facts["ppid"]
    assert warm_start != os.getpid(), "the worker was not forked from a warm start"
    assert facts["pgid"] == facts["sid"] == facts["pid"]  # its own session: a timeout kills its group
    assert facts["marker"] == "set-by-this-test" and facts["torch_threads"] == 1
    assert facts["stdout"].endswith("worker.log") and facts["cuda_initialized"] is False
    assert not psutil.pid_exists(warm_start), "the warm start outlived its sweep"
    assert not psutil.Process().children(recursive=True)


def test_a_warm_start_that_cannot_start_leaves_the_sweep_to_fresh_interpreters(tmp_path, monkeypatch):
    monkeypatch.setattr(Zygote, "command", ["python3", "-c", "raise SystemExit(3)"])
    monkeypatch.setenv(FACTS, str(tmp_path / "facts.json"))
    result = _optimize(tmp_path, ["eager", ProcessFactsRuntime.recipe()])
    assert [r.status for r in result.results] == [Status.OK, Status.OK]
    assert json.loads((tmp_path / "facts.json").read_text())["ppid"] == os.getpid()  # a fresh interpreter of ours


def test_a_warm_start_that_dies_ends_its_worker_and_the_sweep_goes_on_without_it(tmp_path, monkeypatch):
    monkeypatch.setenv(FACTS, str(tmp_path / "facts.json"))
    result = _optimize(tmp_path, ["eager", KillsItsParentRuntime.recipe(), ProcessFactsRuntime.recipe()],
                       time_budget_s=None)
    orphaned = _status(result, "test_kills_its_parent")
    assert orphaned.status is Status.CRASHED and "SIGTERM" in orphaned.reason, orphaned.reason
    assert orphaned.wall_s < 30  # ended by its parent's death, not by the 60 s timeout
    assert _status(result, "test_process_facts").status is Status.OK
    assert json.loads((tmp_path / "facts.json").read_text())["ppid"] == os.getpid()


def test_the_warm_start_preloads_the_models_installed_libraries_and_never_the_users_files():
    from transformers import BertConfig, BertModel

    from hone.search.zygote import installed_modules_of

    bert = BertModel(BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=32))
    assert "transformers.models.bert.modeling_bert" in installed_modules_of(bert)
    model, _ = tiny_mlp()  # defined in this suite's own file, which only a worker may import
    assert installed_modules_of(model) == ()
    assert installed_modules_of(None) == ()


def test_cuda_sweeps_keep_a_fresh_interpreter_per_job():
    from hone.search.zygote import warm_start_fits

    assert warm_start_fits("cpu") and not warm_start_fits("cuda") and not warm_start_fits("cuda:1")


def test_a_forked_worker_exits_as_a_fresh_one_does_running_its_exit_handlers(tmp_path, monkeypatch):
    import tempfile

    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setenv("TMPDIR", str(private))  # the workers' temporary folder
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    result = _optimize(tmp_path, ["eager", LeavesTempToExitRuntime.recipe()])
    assert _status(result, "test_leaves_temp_to_exit").status is Status.OK
    assert not [p.name for p in private.iterdir() if p.name.startswith("left-to-exit-")]
