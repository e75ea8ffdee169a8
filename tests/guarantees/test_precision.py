"""Guarantee: precision is what it says. An fp32 candidate is built and run with TF32 off (cuDNN's
default is on) and matmul precision "highest", and what torch reads back is stored with it; a backend that claims fp32 and silently computes in bf16 is
rejected, and the reason says so. (OpenVINO's and TensorRT's own switches:
tests/runtimes/test_openvino_runtime.py, tests/runtimes/test_tensorrt.py.)"""

from __future__ import annotations

import pytest

import hone
from hone.search.result import Status
from hone.store import Store
from plugins_for_tests import PrecisionReportingRuntime, SilentBf16Runtime
from tiny_models import tiny_mlp

pytestmark = pytest.mark.slow


def test_fp32_candidates_run_ieee_fp32_and_a_silent_bf16_backend_is_rejected(tmp_path):
    model, x = tiny_mlp()
    result = hone.optimize(model, x, recipes=[PrecisionReportingRuntime.recipe(), SilentBf16Runtime.recipe()],
                           store=tmp_path / "runs.db", progress=False, measure_time_s=0.1, profile_first=False)
    got = {r.recipe.label: r for r in result.results}
    pinned = got["test_precision_reporting"]
    assert pinned.status is Status.OK
    assert pinned.runner_info["cudnn_tf32_at_build"] is False  # torch's own default is True (TF32 convs)
    assert pinned.runner_info["matmul_precision_at_build"] == "highest"  # in force while it was built
    info = pinned.runner_info  # read back, stored with the result
    assert info["cudnn_allow_tf32"] is False and info["cuda_matmul_allow_tf32"] is False
    assert info["float32_matmul_precision"] == "highest"
    silent = got["test_silent_bf16"]
    assert silent.status is Status.WRONG_ANSWER and silent.measurement is None
    assert "the backend computes below the fp32 it claims" in silent.reason, silent.reason
    with Store(tmp_path / "runs.db") as db:
        stored = {r.recipe.label: r for r in db.load_run().results}
    assert stored["test_precision_reporting"].runner_info["cudnn_allow_tf32"] is False
    assert stored["test_silent_bf16"].reason == silent.reason
