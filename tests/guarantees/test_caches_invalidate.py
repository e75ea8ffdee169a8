"""Guarantee: what hone remembers is reused only under the conditions it was learnt in. Known
failures and resumable runs need the same library versions, inputs and machine; a miss of the
accuracy budget counts only under the same budget, an `oom` only under the same worker memory
limit. (Hardware peaks: tests/hardware/test_peaks.py and test_probe.py; TVM's tuning database is
keyed on the module, the target with its cores and CPU features, and TVM's version:
runtimes/_tvm_tuning.database_key.)"""

from __future__ import annotations

import pytest

import hone
from hone import api
from hone.search.history import read_history
from hone.store import Store
from in_process_executor import InProcessExecutor
from plugins_for_tests import UnsupportedRuntime, WrongRuntime
from tiny_models import tiny_mlp

pytestmark = pytest.mark.slow


def _run(tmp_path, x=None, **kw):
    model, example = tiny_mlp()
    return hone.optimize(model, example if x is None else x, store=tmp_path / "runs.db", progress=False,
                         measure_time_s=0.1, profile_first=False, executor=InProcessExecutor(), **kw)


def _known(result) -> set[str]:
    return {r.recipe.label for r in result.results if r.known_from is not None}


def test_known_failures_need_the_same_inputs_versions_and_memory_limit(tmp_path, monkeypatch):
    recipes = [UnsupportedRuntime.recipe()]
    first = _run(tmp_path, recipes=recipes)
    assert _known(_run(tmp_path, recipes=recipes)) == {"test_unsupported"}  # the same conditions: reported
    _, wider = tiny_mlp(batch=8)
    assert _known(_run(tmp_path, x=wider, recipes=recipes)) == set()  # another input spec: tried again
    versions = api._versions()
    monkeypatch.setattr(api, "_versions", lambda: {**versions, "onnxruntime": "0.0.0"})
    assert _known(_run(tmp_path, recipes=recipes)) == set()  # another backend version: tried again
    assert first.run.versions != api._versions()


def test_an_oom_is_known_only_under_the_same_memory_limit(tmp_path):
    with Store(tmp_path / "runs.db") as db:
        run = _run(tmp_path, recipes=[UnsupportedRuntime.recipe()], worker_memory="2GiB")
        # Recorded as an oom (what a worker past its limit gives), as the store would hold it.
        db._conn.execute("UPDATE candidates SET status = 'oom', result_json = replace(result_json, "
                         "'\"status\": \"unsupported\"', '\"status\": \"oom\"') WHERE label = 'test_unsupported'")
        info = db.load_run(run.run.run_id).run
        same = read_history(db, info.model_id, info.fingerprint, "cpu", info.versions, settings=info.settings)
        assert [f.status.value for f in same.failures.values()] == ["oom"]
        more = read_history(db, info.model_id, info.fingerprint, "cpu", info.versions,
                            settings={**info.settings, "memory_limit": 8 * 2**30})
        assert more.failures == {}


def test_a_miss_of_the_accuracy_budget_counts_only_under_the_same_budget(tmp_path):
    run = _run(tmp_path, recipes=[WrongRuntime.recipe()], accuracy_budget=0.01)
    with Store(tmp_path / "runs.db") as db:
        info = db.load_run(run.run.run_id).run
        key = next(r.recipe.key for r in run.results if r.recipe.label == "test_wrong")
        same = read_history(db, info.model_id, info.fingerprint, "cpu", info.versions, settings=info.settings)
        assert same.measured[key].missed_accuracy and "over the accuracy budget" in same.measured[key].not_worth()
        looser = {**info.settings, "accuracy_budget": {"value": 0.5, "relative": False}}
        other = read_history(db, info.model_id, info.fingerprint, "cpu", info.versions, settings=looser)
        assert not other.measured[key].missed_accuracy and other.measured[key].not_worth() is None


def test_a_run_is_resumed_only_under_the_same_library_versions(tmp_path, monkeypatch):
    recipes = [UnsupportedRuntime.recipe()]
    first = _run(tmp_path, recipes=recipes)
    with Store(tmp_path / "runs.db") as db:
        db._conn.execute("UPDATE runs SET status = 'running' WHERE id = ?", (first.run.run_id,))
    versions = api._versions()
    monkeypatch.setattr(api, "_versions", lambda: {**versions, "torch": "0.0.0"})
    assert _run(tmp_path, recipes=recipes, resume=True).run.run_id != first.run.run_id
    monkeypatch.setattr(api, "_versions", lambda: versions)
    assert _run(tmp_path, recipes=recipes, resume=True).run.run_id == first.run.run_id
