"""Guarantee: an artifact is whole or absent. A kill -9 during export leaves no target (only a
hidden partial, which the next export there removes); what is exported verifies against its
checksum and re-checks its outputs when loaded; `hone.load` and a whole run leave no temporary
folder behind."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

import hone
from hone import export
from hone.atomic import PARTIAL
from hone.config import NoConfig
from hone.search.recipe import Recipe, Step
from harness import build
from plugins_for_tests import CountingRuntime, SlowEagerRuntime
from tiny_models import tiny_mlp

EAGER = Recipe("eager", (), Step("eager", NoConfig()), baseline=True)
TESTS = Path(__file__).resolve().parents[1]

# A runner whose save writes half its files, says so and waits to be killed.
KILLED_MID_SAVE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import torch
    from hone import export
    from hone.config import NoConfig
    from hone.search.recipe import Recipe, Step
    from harness import build
    from tiny_models import tiny_mlp

    target, ready = Path(sys.argv[1]), Path(sys.argv[2])
    recipe = Recipe("eager", (), Step("eager", NoConfig()), baseline=True)
    model, x = tiny_mlp()
    runner, _, named, expected = build(recipe, model, x)
    save = runner.save

    def save_then_hang(directory):
        files = save(directory)
        ready.write_text(str(directory))
        time.sleep(600)
        return files

    runner.save = save_then_hang
    export.save(runner, recipe, target, input_names=list(named), output_names=list(expected),
                example_inputs=tuple(named.values()), reference=tuple(expected.values()))
""")


def _save(target: Path) -> None:
    model, x = tiny_mlp()
    runner, _, named, expected = build(EAGER, model, x)
    export.save(runner, EAGER, target, input_names=list(named), output_names=list(expected),
                example_inputs=tuple(named.values()), reference=tuple(expected.values()))


def _kill_mid_save(tmp_path: Path, target: Path) -> Path:
    """Run an export in a child, kill -9 it once its runtime's files are written; the partial."""
    script, ready = tmp_path / "killed_mid_save.py", tmp_path / "ready"
    script.write_text(KILLED_MID_SAVE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, str(script), str(target), str(ready)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, "the exporting child ended before it was killed"
            assert time.monotonic() < deadline, "the exporting child never reached its save"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    return Path(ready.read_text())


def test_a_kill_during_export_leaves_no_artifact_and_the_next_export_is_whole(tmp_path):
    target = tmp_path / "exported"
    partial = _kill_mid_save(tmp_path, target)
    assert not target.exists()  # never half an artifact where the user asked for one
    assert partial.parent == tmp_path and PARTIAL in partial.name and (partial / "model.pt2").is_file()

    _save(target)
    assert not partial.exists()  # the dead writer's partial is cleared by the next export there
    manifest = export.verify(target)
    export.verify(target, sha256=manifest["sha256"])
    model, x = tiny_mlp()
    loaded = hone.load(target)  # re-checks the example inputs' outputs on load
    torch.testing.assert_close(loaded(x)[0], model(x))


def test_a_kill_while_copying_a_winner_out_leaves_the_target_as_it_was(tmp_path):
    source, target = tmp_path / "measured", tmp_path / "copy"
    _save(source)
    sha = export.read_manifest(source)["sha256"]
    target.mkdir()
    (target / "keep.txt").write_text("the user's file")
    # A non-empty target is refused before anything is written; the user's file is untouched.
    try:
        export.copy_artifact(source, target, sha)
    except hone.InputError as exc:
        assert "is not empty" in str(exc)
    else:
        raise AssertionError("copying into a non-empty folder was not refused")
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    fresh = export.copy_artifact(source, tmp_path / "fresh", sha)
    assert export.verify(fresh, sha256=sha)["sha256"] == sha
    assert not [p for p in tmp_path.iterdir() if PARTIAL in p.name]


def test_load_and_a_whole_run_leave_no_temporary_folder(tmp_path, monkeypatch):
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setenv("TMPDIR", str(private))  # the workers' temporary folders too
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    model, x = tiny_mlp()
    result = hone.optimize(model, x, recipes=[SlowEagerRuntime.recipe(), CountingRuntime.recipe()],
                           store=tmp_path / "runs.db", progress=False, measure_time_s=0.1)
    assert result.selection.best is not None
    exported = result.export(tmp_path / "out")
    for _ in range(3):
        runner = hone.load(exported)
        runner(x)
        assert [p.name for p in private.iterdir() if p.name.startswith("hone-load-")]  # in use while it lives
        del runner
        gc.collect()
    # torch's compile cache (torchinductor_<user>) lives in the temporary folder by torch's design
    # and is meant to outlive the run: the next build reuses it. Nothing of hone's may be left.
    left = sorted(p.name for p in private.iterdir() if not p.name.startswith("torchinductor_"))
    assert left == [], f"temporary folders left behind: {left}"


def test_a_run_removes_the_scratch_folders_of_runs_that_were_killed(tmp_path, monkeypatch):
    """Only a live process removes its own scratch folder, so a kill -9 leaves it: the next run
    removes those whose owner is dead and that were untouched for an hour, and no other."""
    from hone import scratch

    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    hour_ago = time.time() - scratch.ORPHAN_AGE_S - 60

    def folder(name: str, old: bool) -> Path:
        path = private / name
        (path / "work").mkdir(parents=True)
        (path / "work" / "bundle.pt").write_bytes(b"x" * 1000)
        if old:
            os.utime(path, (hour_ago, hour_ago))
        return path

    orphans = [folder(f"hone-{kind}-{dead.pid}-abc123", old=True) for kind in scratch.KINDS]
    kept = [folder(f"hone-run-{os.getpid()}-live", old=True),  # its owner (this process) lives
            folder(f"hone-load-{dead.pid}-recent", old=False),  # touched recently: maybe another namespace's
            folder("hone-load-no-owner", old=True),  # no pid in its name: not one this version made
            folder(f"not-hone-{dead.pid}-abc", old=True)]
    model, x = tiny_mlp()
    hone.optimize(model, x, recipes=[CountingRuntime.recipe()], store=False, progress=False, measure_time_s=0.05,
                  profile_first=False, time_budget_s=None)
    assert not any(p.exists() for p in orphans)
    assert all(p.exists() for p in kept)
