"""The terminal shows hone's own lines only: what libraries write to stdout / stderr (at the
file-descriptor level, as C++ code does) goes to the run's log file; -q prints the verdict only."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

FACTORY = textwrap.dedent('''
    import os
    import warnings

    import torch

    # What a noisy library does on import: C-level writes to both descriptors, a Python warning.
    os.write(2, b"NOISY-LIB: fd2 profiler_start\\n")
    os.write(1, b"NOISY-LIB: fd1 banner\\n")
    warnings.warn("NOISY-LIB: this API is deprecated")


    def make():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU()).eval(), torch.randn(2, 8)
''')


def _run(tmp_path, *extra):
    factory = tmp_path / "noisy.py"
    factory.write_text(FACTORY)
    cmd = [sys.executable, "-c", "import sys; from hone.cli.app import main; sys.exit(main())", "optimize", f"{factory}:make", "--recipe", "torchscript",
           "--no-profile", "--measure-time", "0.3", "--db", str(tmp_path / "runs" / "hone.db"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_library_output_goes_to_the_log_and_hone_says_where(tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "NOISY-LIB" not in done.stdout and "NOISY-LIB" not in done.stderr
    assert "best:" in done.stdout  # hone's own report is still there
    logs = list((tmp_path / "runs" / "logs").glob("*.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    assert "fd2 profiler_start" in text and "fd1 banner" in text and "deprecated" in text
    assert str(logs[0]) in done.stderr


def test_quiet_prints_the_verdict_only(tmp_path):
    done = _run(tmp_path, "-q")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("best: ")
    assert done.stderr.strip() == ""
