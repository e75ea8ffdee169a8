"""Misbehaving candidates get the right status and reason, and the sweep always completes."""

from __future__ import annotations

import time

import pytest

import hone
from hone.search.result import Status
from plugins_for_tests import (
    AbortRuntime, HangRuntime, NanRuntime, OomRuntime, RaiseRuntime, UnsupportedRuntime, WrongRuntime,
)
from tiny_models import tiny_mlp

pytestmark = pytest.mark.slow  # each candidate is a fresh interpreter (a few seconds)


def _optimize(recipes, **kw):
    model, x = tiny_mlp()
    return hone.optimize(model, x, recipes=[r.recipe() for r in recipes], store=False, progress=False, measure_time_s=0.3, **kw)


def _by_label(result):
    return {r.recipe.label: r for r in result.results}


def test_abort_and_raise_and_oom_and_unsupported_in_one_sweep():
    result = _optimize([AbortRuntime, RaiseRuntime, OomRuntime, UnsupportedRuntime])
    got = _by_label(result)
    assert got["eager"].status is Status.OK
    assert got["test_abort"].status is Status.CRASHED
    assert "SIGABRT" in got["test_abort"].reason
    assert got["test_raise"].status is Status.CRASHED
    assert "build raised ValueError: deliberate failure in build" in got["test_raise"].reason
    assert "ValueError" in got["test_raise"].log_tail  # the traceback is kept for the user
    assert got["test_oom"].status is Status.OOM
    assert got["test_unsupported"].status is Status.UNSUPPORTED
    assert "aten::frobnicate" in got["test_unsupported"].reason
    # An expected refusal keeps its reason only: no traceback, no stderr chatter in the result.
    assert got["test_unsupported"].log_tail == "" and got["test_oom"].log_tail
    assert result.selection.best.label == "eager"


def test_hanging_candidate_times_out_and_the_sweep_goes_on():
    start = time.perf_counter()
    result = _optimize([HangRuntime, RaiseRuntime], timeout_s=8)
    got = _by_label(result)
    assert got["test_hang"].status is Status.TIMEOUT
    assert "8 s" in got["test_hang"].reason
    assert got["test_raise"].status is Status.CRASHED  # ran after the hang was killed
    assert time.perf_counter() - start < 120


def test_wrong_and_nan_answers_are_rejected_before_timing():
    got = _by_label(_optimize([WrongRuntime, NanRuntime]))
    wrong, nan = got["test_wrong"], got["test_nan"]
    assert wrong.status is Status.WRONG_ANSWER and wrong.measurement is None
    assert "max abs err 1" in wrong.reason
    assert nan.status is Status.WRONG_ANSWER and "NaN/Inf" in nan.reason


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_interrupting_or_killing_the_parent_ends_the_worker(tmp_path, how):
    """Ctrl-C during a candidate: the parent stops and leaves no worker behind. Killed outright
    (SIGKILL: no handler runs), the worker ends too, on its own (die_with_parent)."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    import psutil

    script = tmp_path / "interrupt_me.py"
    script.write_text(textwrap.dedent("""
        import hone
        from plugins_for_tests import HangRuntime
        from tiny_models import tiny_mlp
        model, x = tiny_mlp()
        hone.optimize(model, x, recipes=[HangRuntime.recipe()], store=False, progress=False,
                      measure_time_s=0.3, timeout_s=600)
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "PYTHONFAULTHANDLER": "1"}  # stacks if it hangs
    def like_a_shell():
        # A terminal's process gets SIGINT at its default; whatever this test process inherited
        # or set (in a full run the parent was found ignoring it) must not decide the test.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])

    parent = subprocess.Popen(
        [sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True, preexec_fn=like_a_shell
    )
    me = psutil.Process(parent.pid)
    deadline = time.monotonic() + 120
    hanging = []
    def is_hanging_worker(process) -> bool:
        # A worker writes its job's worker.log (forked from the warm start or not: no command
        # line of its own to tell it by); its job.json beside it names the recipe.
        try:
            logs = [f.path for f in process.open_files() if f.path.endswith("worker.log")]
            return any("test_hang" in open(os.path.join(os.path.dirname(log), "job.json")).read() for log in logs)
        except (psutil.Error, OSError):  # a worker that just finished (the eager baseline's)
            return False

    while time.monotonic() < deadline and not hanging:  # wait until the hanging worker runs
        hanging = [c for c in me.children(recursive=True) if is_hanging_worker(c)]
        time.sleep(0.5)
    assert hanging, "the hanging candidate never started"
    time.sleep(1)
    parent.send_signal(getattr(signal, how))
    try:
        _, err = parent.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # show where the parent is stuck (faulthandler on SIGABRT)
        parent.send_signal(signal.SIGABRT)
        _, err = parent.communicate(timeout=30)
        raise AssertionError(f"the parent did not stop within 60 s of Ctrl-C; its stacks:\n{err[-6000:]}") from None
    assert parent.returncode != 0 and ("KeyboardInterrupt" in err if how == "SIGINT" else parent.returncode == -9)
    hanging[0].wait(timeout=10)  # raises if the worker outlived its parent
    assert not hanging[0].is_running()
