"""Chrome traces, NVTX ranges that never initialise CUDA, and the nsys command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from hone.profiler import trace
from skips import REQUIRES_NO_CUDA


def test_chrome_trace_of_a_linear_is_json_with_aten_ops(tmp_path):
    lin, x = torch.nn.Linear(8, 4), torch.randn(2, 8)

    def forward():
        with torch.inference_mode():
            lin(x)

    path = trace.export_chrome_trace(forward, tmp_path / "t" / "trace.json", iterations=2)
    events = json.loads(path.read_text())["traceEvents"]
    names = {e.get("name", "") for e in events}
    assert any(n.startswith("aten::") for n in names)
    assert {f"{trace.STEP_LABEL} #0", f"{trace.STEP_LABEL} #1"} <= names


def test_chrome_trace_rejects_zero_iterations(tmp_path):
    with pytest.raises(ValueError, match="iterations"):
        trace.export_chrome_trace(lambda: None, tmp_path / "t.json", iterations=0)


def test_nvtx_range_is_a_no_op_without_initialised_cuda():
    if torch.cuda.is_initialized():
        pytest.skip(REQUIRES_NO_CUDA)
    with trace.nvtx_range("stage"):
        value = 1 + 1
    assert value == 2 and not torch.cuda.is_initialized()


def test_nsys_command(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert trace.nsys_command(["python", "x.py"], Path("out/run")) is None
    monkeypatch.setattr(shutil, "which", lambda name: "/opt/nsys/bin/nsys" if name == "nsys" else None)
    command = trace.nsys_command(["python", "x.py"], Path("out/run"))
    assert command == ["/opt/nsys/bin/nsys", "profile", "--trace=cuda,nvtx,osrt", "-o", "out/run", "--force-overwrite", "true", "python", "x.py"]
