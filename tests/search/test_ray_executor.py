"""--executor ray on a real local Ray (2 CPUs, one session for the module): the same outcome as
the local executor on the same plan, a Ray worker killed mid-candidate is `crashed` while the
sweep goes on, a run interrupted locally resumes on Ray, and several models run side by side."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from hone._optional import is_available
from hone.bench.measure import MeasureSettings
from hone.config import NoConfig
from hone.search.executor import SubprocessExecutor, executor_for
from hone.search.planner import PlannedRecipe
from hone.search.recipe import Recipe, Step
from hone.search.result import Status
from hone.search.select import select
from hone.search.sweep import SweepSettings, sweep
from hone.validate.reference import compute_reference
from hone.validate.verdict import AccuracyBudget
from executor_outcome import outcome, tiny_workload
from plugins_for_tests import CountingRuntime, ShapeBoundRuntime, SleepInBuildRuntime, UnsupportedRuntime, WrongRuntime
from skips import REQUIRES_RAY
from tiny_models import TinyMLP

needs_ray = pytest.mark.skipif(not is_available("ray"), reason=REQUIRES_RAY)
EAGER = Recipe("eager", (), Step("eager", NoConfig()), baseline=True)
SETTINGS = SweepSettings(device="cpu", threads=1, timeout_s=120, accuracy_budget=AccuracyBudget(0.01),
                         measure=MeasureSettings(max_time_s=0.2))
KILL_WAIT_S = 120.0


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module (starting one takes seconds); each test's RayExecutor joins
    it (an executor that finds a session leaves it running) and takes its own test's lock file."""
    from hone.search.ray_executor import RayExecutor

    owner = RayExecutor(num_cpus=2)
    owner.start()
    yield owner
    owner.close()


@pytest.mark.slow
@needs_ray
def test_a_local_ray_gives_the_same_outcome_as_the_local_executor(ray_session, tmp_path):
    from hone import export
    from hone.search.ray_executor import RayExecutor

    workload = tiny_workload()
    reference = compute_reference(workload)
    recipes = (EAGER, CountingRuntime.recipe(), ShapeBoundRuntime.recipe(), WrongRuntime.recipe(),
               UnsupportedRuntime.recipe())
    planned = [PlannedRecipe(r) for r in recipes]

    with RayExecutor() as on_ray:
        there = sweep(planned, workload, reference, SETTINGS, executor=on_ray, artifacts_dir=tmp_path / "ray")
    here = sweep(planned, workload, reference, SETTINGS, artifacts_dir=tmp_path / "local")
    assert outcome(there) == outcome(here)
    statuses = {r.recipe.label: r.status for r in there}
    assert statuses == {"eager": Status.OK, "test_counting": Status.OK, "test_shape_bound": Status.OK,
                        "test_wrong": Status.WRONG_ANSWER, "test_unsupported": Status.UNSUPPORTED}
    # The winner's artifacts, saved on the node, came back into the driver's folder and load as saved.
    best = select(there).best
    kept = [r.artifact for r in there if r.recipe.key == best.key]
    assert len(kept) == 2 and all(Path(a["dir"]).is_relative_to(tmp_path / "ray") and Path(a["dir"]).is_dir() for a in kept)
    export.load(kept[0]["dir"], threads=1, device="cpu", sha256=kept[0]["sha256"])


@pytest.mark.slow
@needs_ray
def test_a_ray_worker_killed_mid_candidate_is_crashed_and_the_sweep_goes_on(ray_session, tmp_path):
    import psutil

    from hone.search.ray_executor import RayExecutor

    workload = tiny_workload()
    reference = compute_reference(workload)
    pids = tmp_path / "pids"
    planned = [PlannedRecipe(r) for r in (EAGER, SleepInBuildRuntime.recipe_with(str(pids)), CountingRuntime.recipe())]
    killed: dict[str, int] = {}

    def kill_the_ray_task() -> None:
        deadline = time.monotonic() + KILL_WAIT_S
        while not pids.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        worker, task = map(int, pids.read_text().split())
        # The candidate's parent is the Ray worker running the task: kill that, not the candidate.
        killed.update(worker=worker, task=task, task_cmdline=" ".join(psutil.Process(task).cmdline()))
        psutil.Process(task).send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_the_ray_task, daemon=True)
    killer.start()
    with RayExecutor() as on_ray:
        results = sweep(planned, workload, reference, SETTINGS, executor=on_ray, artifacts_dir=tmp_path / "art")
    killer.join(timeout=5)

    assert "ray" in killed["task_cmdline"].lower()  # it was Ray's worker process that died
    by_label = {}
    for r in results:
        by_label.setdefault(r.recipe.label, []).append(r)
    dead = by_label["test_sleep_in_build"]
    assert [r.status for r in dead] == [Status.CRASHED, Status.CRASHED]
    assert all("the Ray task died" in r.reason and "WorkerCrashedError" in r.reason for r in dead)
    # The sweep went on: the candidate after it ran, on another Ray worker.
    assert [r.status for r in by_label["test_counting"]] == [Status.OK, Status.OK]
    # The candidate's own process died with its Ray worker (it is not left timing unseen).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(killed["worker"]):
        time.sleep(0.1)
    assert not _alive(killed["worker"])


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class _StopAfter:
    """The local executor for the first `jobs` jobs, then an interruption: a run cut short."""

    def __init__(self, jobs: int, workdir: Path):
        self.jobs, self.inner = jobs, SubprocessExecutor(workdir)

    def run(self, recipe, job, payload, timeout_s):
        if self.jobs == 0:
            raise _Interrupted()
        self.jobs -= 1
        return self.inner.run(recipe, job, payload, timeout_s)


class _Interrupted(Exception):
    pass


class _Recording:
    """A RayExecutor that notes which recipes it was asked to run."""

    def __init__(self, inner):
        self.inner, self.ran = inner, []

    def run(self, recipe, job, payload, timeout_s):
        self.ran.append(recipe.label)
        return self.inner.run(recipe, job, payload, timeout_s)


@pytest.mark.slow
@needs_ray
def test_a_run_interrupted_locally_resumes_on_ray_with_only_what_is_missing(ray_session, tmp_path):
    import hone
    from hone.search.ray_executor import RayExecutor
    from hone.store import Store

    torch.manual_seed(0)
    model, inputs = TinyMLP().eval(), torch.randn(4, 32)
    store = tmp_path / "hone.db"
    options = dict(recipes=[CountingRuntime.recipe(), ShapeBoundRuntime.recipe(), WrongRuntime.recipe()], store=store,
                   threads=1, measure_time_s=0.2, time_budget_s=None, fallback_attempts=0, progress=False)
    with pytest.raises(_Interrupted):
        hone.optimize(model, inputs, executor=_StopAfter(2, tmp_path / "local"), **options)
    with Store(store) as db:
        (interrupted,) = db.list_runs()
        done_before = {r.recipe.label for r in db.results(interrupted["id"])}
    assert interrupted["status"] == "interrupted" and done_before == {"eager", "test_counting"}

    with RayExecutor() as on_ray:
        recording = _Recording(on_ray)
        result = hone.optimize(model, inputs, executor=recording, resume=True, **options)
    assert result.run.run_id == interrupted["id"]  # the same run: the executor is not part of its identity
    assert recording.ran == ["test_shape_bound", "test_wrong"]
    assert {r.recipe.label: r.status for r in result.results} == {
        "eager": Status.OK, "test_counting": Status.OK, "test_shape_bound": Status.OK, "test_wrong": Status.WRONG_ANSWER}


@pytest.mark.slow
@needs_ray
def test_two_models_side_by_side_on_ray_finish_one_run_each_in_a_shared_store(ray_session, tmp_path):
    from hone.search.many import optimize_many
    from hone.store import Store

    factories = tmp_path / "two_models.py"
    factories.write_text(
        "import torch\nfrom tiny_models import TinyMLP\n\n"
        "def small():\n    torch.manual_seed(0)\n    return TinyMLP(hidden=16).eval(), torch.randn(2, 32)\n\n"
        "def wide():\n    torch.manual_seed(1)\n    return TinyMLP(hidden=128).eval(), torch.randn(4, 32)\n"
    )
    models = [f"{factories}:small", f"{factories}:wide"]
    order: list[str] = []
    runs = optimize_many(models, executor="ray", store=tmp_path / "hone.db", recipes=[CountingRuntime.recipe()],
                         threads=1, measure_time_s=0.2, time_budget_s=None, fallback_attempts=0,
                         on_start=lambda m: order.append(f"start {m}"), on_done=lambda r: order.append(f"done {r.model}"))
    assert [r.model for r in runs] == models and all(r.error is None for r in runs), [r.error for r in runs]
    # Side by side: both had started before either was done.
    assert sorted(order[:2]) == sorted(f"start {m}" for m in models)
    with Store(tmp_path / "hone.db") as db:
        stored = db.list_runs()
    assert sorted((r["model"], r["status"], r["best"] is not None) for r in stored) == sorted(
        (m, "finished", True) for m in models)
    for run in runs:
        assert {r.recipe.label: r.status for r in run.result.results} == {"eager": Status.OK, "test_counting": Status.OK}


def test_an_unknown_executor_or_a_missing_ray_fails_before_any_work(monkeypatch):
    from hone.errors import InputError, MissingDependency

    with pytest.raises(InputError, match="unknown executor"):
        executor_for("dask")
    with pytest.raises(InputError, match="Ray address"):
        executor_for("local", "auto")
    monkeypatch.setattr("hone._optional.is_available", lambda package: package != "ray")
    with pytest.raises(MissingDependency) as missing:
        executor_for("ray")
    assert "hone[ray]" in str(missing.value)


def test_executor_for_leaves_a_given_executor_to_its_caller(tmp_path):
    given = SubprocessExecutor(tmp_path)
    with executor_for(given) as chosen:
        assert chosen is given
    with executor_for(None) as chosen:
        assert chosen is None
