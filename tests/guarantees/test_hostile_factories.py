"""Guarantee: a factory (path/file.py:function, the user's own code) that forks, sleeps
forever, calls sys.exit or prints megabytes, or returns a model whose forward writes into its
inputs, gives one clear error or finishes its run, within the timeout; hone never hangs, never
exits with the factory's code and never runs twice."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

MODEL = """
import os, sys, time
import torch


class Mutating(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 2)

    def forward(self, x):
        x.mul_(2)  # writes into the caller's tensor
        return self.fc(x)


def forks():
    if os.fork() == 0:
        print("child-of-factory", flush=True)
    return torch.nn.Linear(8, 2), torch.randn(2, 8)


def sleeps():
    time.sleep(3600)


def exits():
    sys.exit(3)


def prints():
    for _ in range(20_000):
        print("x" * 255)
    return torch.nn.Linear(8, 2), torch.randn(2, 8)


def mutates():
    return Mutating(), torch.randn(2, 8)


def sleeps_in_forward():
    class Slow(torch.nn.Module):
        def forward(self, x):
            time.sleep(3600)
    return Slow(), torch.randn(2, 8)
"""


def _run_cli(tmp_path: Path, function: str, *extra: str) -> subprocess.CompletedProcess:
    """`hone optimize file.py:function` in its own process: a fork or an exit must not reach pytest."""
    model = tmp_path / "factories.py"
    model.write_text(MODEL)
    env = {**os.environ, "HONE_DB": str(tmp_path / "runs" / "hone.db"), "HONE_NO_PROGRESS": "1"}
    cli = "import sys; from hone.cli.app import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", cli, "optimize", f"{model}:{function}", "--no-profile",
                           "--only", "eager", "--measure-time", "0.1", *extra],
                          capture_output=True, text=True, timeout=300, env=env)


def _one_clear_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    err = done.stderr.strip()
    assert done.returncode == 2, (done.returncode, err[-2000:])
    assert err.splitlines()[-1].startswith("error: ") and "Traceback" not in err, err[-2000:]
    for fragment in fragments:
        assert fragment in err, err[-2000:]


def test_a_factory_that_calls_sys_exit(tmp_path):
    _one_clear_error(_run_cli(tmp_path, "exits"), "factory exits", "called sys.exit(3)")


def test_a_factory_that_never_returns_is_stopped_at_the_timeout(tmp_path):
    started = time.monotonic()
    _one_clear_error(_run_cli(tmp_path, "sleeps", "--timeout", "3"), "factory sleeps", "did not return within 3 s")
    assert time.monotonic() - started < 120


def test_a_forward_that_never_returns_is_stopped_at_the_timeout(tmp_path):
    _one_clear_error(_run_cli(tmp_path, "sleeps_in_forward", "--timeout", "3"), "forward", "did not return within 3 s")


def test_a_forward_that_writes_into_its_inputs(tmp_path):
    _one_clear_error(_run_cli(tmp_path, "mutates"), "forward changed its input 'x' in place")


def _log(done: subprocess.CompletedProcess) -> str:
    """The run's log (the CLI keeps what the run printed there)."""
    (path,) = set(re.findall(r"\S+/hone-optimize-[\w-]+\.log", done.stdout + done.stderr))
    return Path(path).read_text()


@pytest.mark.slow
def test_a_factory_that_forks_runs_one_sweep(tmp_path):
    done = _run_cli(tmp_path, "forks")
    assert done.returncode == 0, done.stderr[-2000:]
    log = _log(done)
    assert log.count("child-of-factory") == 1  # the copy printed, then ended before any sweep
    assert (done.stdout + log).count("hone run 1 ") == 1 and "hone run 2" not in done.stdout + log


@pytest.mark.slow
def test_a_factory_that_prints_megabytes(tmp_path):
    done = _run_cli(tmp_path, "prints")
    assert done.returncode == 0, done.stderr[-2000:]
    log = _log(done)
    assert len(log) < 200_000 and "printed 5.1 MB more, not shown" in log
