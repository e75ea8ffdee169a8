"""Run one candidate in a fresh interpreter, in its own process group, with a timeout.

A fresh interpreter (the `spawn` model) shares no state with the parent: no CUDA context, no
inductor cache in memory, no thread pools. Its own process group lets a timeout kill
everything it started (compile workers included). The sweep never dies with a candidate.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hone.search._child import UNEXPECTED
from hone.search.job import Job
from hone.search.recipe import Recipe
from hone.search.result import CandidateResult, Status

STDERR_TAIL_CHARS = 3000
KILL_GRACE_S = 5.0


def worker_env(threads: int) -> dict[str, str]:
    """The same explicit thread settings for every candidate, before any library starts."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_candidate(recipe: Recipe, job: Job, job_dir: Path, timeout_s: float) -> CandidateResult:
    job_dir.mkdir(parents=True, exist_ok=True)
    job_path = job_dir / "job.json"
    job.write(job_path)
    result_path = Path(job.result_path)
    result_path.unlink(missing_ok=True)
    log_path = job_dir / "worker.log"
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hone.search._child", str(job_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=worker_env(job.threads),
            start_new_session=True,  # own session and process group
        )
        timed_out = False
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            returncode = proc.wait()
        except BaseException:
            # Ctrl-C reaches only our process group, not the worker's own session: take it down
            # with us instead of leaving it running unseen.
            _kill_group(proc)
            proc.wait()
            raise
        _kill_group(proc)  # stragglers (compile workers) of a finished worker
    wall_s = time.perf_counter() - started
    tail = _tail(log_path)

    if timed_out:
        return CandidateResult(recipe, job.input_set, Status.TIMEOUT, f"no result after {timeout_s:g} s; process group killed", wall_s=wall_s, log_tail=tail)
    if result_path.exists():
        data = json.loads(result_path.read_text())
        return _from_child(recipe, job.input_set, data, wall_s, tail)
    if returncode < 0:
        sig = signal.Signals(-returncode).name
        hint = " (the kernel's out-of-memory killer sends this)" if sig == "SIGKILL" else ""
        return CandidateResult(recipe, job.input_set, Status.CRASHED, f"worker killed by {sig}{hint}", wall_s=wall_s, log_tail=tail)
    return CandidateResult(recipe, job.input_set, Status.CRASHED, f"worker exited with code {returncode} without a result", wall_s=wall_s, log_tail=tail)


def _from_child(recipe: Recipe, input_set: str, data: dict, wall_s: float, tail: str) -> CandidateResult:
    from hone.bench.measurement import Measurement
    from hone.validate.verdict import Verdict

    return CandidateResult(
        recipe=recipe,
        input_set=input_set,
        status=Status(data["status"]),
        reason=data["reason"],
        verdict=Verdict.from_dict(data["verdict"]) if data.get("verdict") else None,
        measurement=Measurement.from_dict(data["measurement"]) if data.get("measurement") else None,
        runner_info=data.get("runner_info") or {},
        wall_s=wall_s,
        # Worker output only for unexpected ends; an expected refusal or a rejected answer has
        # its reason, and its stderr is backend chatter.
        log_tail=data.get("log_tail") or (tail if data["status"] in UNEXPECTED else ""),
    )


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + KILL_GRACE_S
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-STDERR_TAIL_CHARS:].decode("utf-8", "replace")

