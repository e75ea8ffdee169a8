"""The template methods' one exception hook: a backend's error is `unsupported` with its first
line; a bug in hone's or the plugin's own code stays `crashed`, with its traceback."""

from __future__ import annotations

import pytest
import torch

from hone.errors import Unsupported
from hone.plugin import Artifact, BuildContext
from hone.search._child import failure
from plugin_toy_pass import ToyBackendFailure, ToyOwnBug


def _apply(plugin, tmp_path):
    x = torch.randn(2, 3)
    ctx = BuildContext((x,), ["x"], ["output"], tmp_path, 1)
    return plugin().apply(Artifact("torch", torch.nn.Linear(3, 3)), ctx)


def test_an_error_raised_inside_the_backend_is_unsupported_with_its_first_line(tmp_path):
    with pytest.raises(Unsupported) as caught:
        _apply(ToyBackendFailure, tmp_path)
    message = caught.value.message
    assert message.startswith("test_toy_backend_failure apply failed: ") and "\n" not in message, message
    assert "RuntimeError: a and b must have same reduction dim" in message  # the backend's own first line
    tb = caught.value.__cause__.__traceback__  # kept as the cause, raised inside torch
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert "/torch/" in tb.tb_frame.f_code.co_filename
    status, reason = failure(caught.value, "build")["status"], failure(caught.value, "build")["reason"]
    assert status == "unsupported" and reason == message


def test_a_bug_in_the_plugins_own_code_stays_a_crash_with_its_traceback(tmp_path):
    with pytest.raises(KeyError) as caught:
        _apply(ToyOwnBug, tmp_path)
    try:
        raise caught.value
    except KeyError as exc:
        result = failure(exc, "build")
    assert result["status"] == "crashed" and result["reason"].startswith("build raised KeyError")
    assert "settings[\"missing\"]" in result["log_tail"]  # the traceback points at the bug
