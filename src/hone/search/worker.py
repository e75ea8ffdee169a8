"""Run one candidate in a worker process of its own, in its own process group, with a timeout.

A worker shares no state with the sweep: no CUDA context, no inductor cache in memory, no
thread pools. It is forked from the sweep's warm start (search.zygote: a process that has
imported torch and run nothing) or, where that cannot start, a fresh interpreter; either way
it starts from the state of a new interpreter after `import torch`. Its own process group lets
a timeout kill everything it started (compile workers included). The sweep never dies with a
candidate.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hone.search._child import PARENT_ENV, UNEXPECTED
from hone.search.job import Job
from hone.search.memory_watch import POLL_S, MemoryWatch, limit_bytes
from hone.search.recipe import Recipe
from hone.search.result import CandidateResult, Status
from hone.search.zygote import ForkedWorker, Zygote

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
    env[PARENT_ENV] = str(os.getpid())  # the worker ends when this process does (_child.die_with_parent)
    return env


@dataclasses.dataclass
class WorkerOutcome:
    """What a finished (or dead) worker left behind, before it becomes results: the child's
    result data, how it died if it did (status, reason), its output's tail and its wall time.
    Plain data, so a remote executor (search.ray_executor) can send it back to the parent."""

    data: dict
    death: tuple[Status, str] | None
    tail: str
    wall_s: float


def run_candidate(recipe: Recipe, job: Job, job_dir: Path, timeout_s: float,
                  zygote: Zygote | None = None) -> list[CandidateResult]:
    """Run `job` (one recipe at each of its input sets) in a fresh worker; one result per set,
    in the job's order. `timeout_s` is per input set: the worker gets that times its sets.
    Sets the worker finished keep their results whatever happens after; the set it died at (and,
    unless it stops at a failure, the sets after it) get `crashed` or `timeout` with the signal
    or timeout and the stderr tail. Sets it left out on purpose (stop_at_failure) get none."""
    return results_from(recipe, job, run_worker(job, job_dir, timeout_s, zygote))


def run_worker(job: Job, job_dir: Path, timeout_s: float, zygote: Zygote | None = None) -> WorkerOutcome:
    """Start the worker for `job` in `job_dir` (forked from `zygote` when given and able, else a
    fresh interpreter), wait for it (killing its process group at the timeout) and read what it
    left."""
    job_dir.mkdir(parents=True, exist_ok=True)
    job_path = job_dir / "job.json"
    job.write(job_path)
    result_path = Path(job.result_path)
    result_path.unlink(missing_ok=True)
    log_path = job_dir / "worker.log"
    limit_s = timeout_s * len(job.input_sets)
    started = time.perf_counter()
    proc = _start(job, job_path, log_path, zygote)
    timed_out, over_memory = False, None
    memory = limit_bytes(job.memory_limit)
    watch = MemoryWatch(proc.pid, memory) if memory else None
    try:
        while True:
            left = limit_s - (time.perf_counter() - started)
            try:
                returncode = proc.wait(timeout=max(0.0, min(left, POLL_S) if watch else left))
                break
            except subprocess.TimeoutExpired:
                if time.perf_counter() - started >= limit_s:
                    timed_out = True
                elif watch is not None:
                    over_memory = watch.over()
                if timed_out or over_memory:
                    _kill_group(proc)
                    returncode = proc.wait()
                    break
    except BaseException:
        # Ctrl-C reaches only our process group, not the worker's own session: take it down
        # with us instead of leaving it running unseen.
        _kill_group(proc)
        proc.wait()
        raise
    _kill_group(proc)  # stragglers (compile workers) of a finished worker
    wall_s = time.perf_counter() - started
    tail = _tail(log_path)
    data = _read_result(result_path)

    if timed_out:
        death = (Status.TIMEOUT, f"no result after {limit_s:g} s; process group killed")
    elif over_memory:
        death = (Status.OOM, watch.reason(over_memory))
    elif data.get("error"):
        error = data["error"]
        death = (Status(error["status"]), error["reason"])
    elif data.get("finished"):
        death = None
    elif returncode < 0:
        sig = signal.Signals(-returncode).name
        hint = " (the kernel's out-of-memory killer sends this)" if sig == "SIGKILL" else ""
        death = (Status.CRASHED, f"worker killed by {sig}{hint}")
    else:
        death = (Status.CRASHED, f"worker exited with code {returncode} without a result")
    return WorkerOutcome(data, death, tail, wall_s)


def results_from(recipe: Recipe, job: Job, outcome: WorkerOutcome) -> list[CandidateResult]:
    """One result per input set from a worker's outcome, the sets' wall times adding up to its life."""
    results = results_of(recipe, job, outcome.data, outcome.death, outcome.tail)
    share_wall(results, outcome.wall_s)
    return results


def results_of(recipe: Recipe, job: Job, data: dict, death: tuple[Status, str] | None, tail: str) -> list[CandidateResult]:
    """One result per input set from a worker's result data (the child's result file); the
    sets it has no result for get `death` (status, reason), or none when it stopped on purpose."""
    results: list[CandidateResult] = []
    sets = data.get("sets") or {}
    for label in job.input_sets:
        if label in sets:
            results.append(_from_child(recipe, label, sets[label], tail))
            continue
        if death is None:
            break  # left out on purpose: the job stops at its first failure
        status, reason = death
        error_tail = (data.get("error") or {}).get("log_tail") or ""
        log_tail = error_tail or (tail if status is not Status.UNSUPPORTED else "")
        results.append(CandidateResult(recipe, label, status, reason, log_tail=log_tail))
        if job.stop_at_failure:
            break
    return results


def _read_result(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # never written, or (not atomically) cut short
        return {}


def share_wall(results: list[CandidateResult], wall_s: float) -> None:
    """Per-set wall times from the worker's own clock; what it did not account for (the
    interpreter's start and exit, or the set it died at) goes to the first set without a time of
    its own, else to the first set, so the sets add up to the worker's whole life."""
    rest = max(0.0, wall_s - sum(r.wall_s for r in results))
    if not results:
        return
    target = next((r for r in results if r.wall_s == 0.0), results[0])
    target.wall_s += rest


def _from_child(recipe: Recipe, input_set: str, data: dict, tail: str) -> CandidateResult:
    # Worker output only for unexpected ends; an expected refusal or a rejected answer has its
    # reason, and its stderr is backend chatter.
    log_tail = data.get("log_tail") or (tail if data["status"] in UNEXPECTED else "")
    return CandidateResult.from_dict({**data, "recipe": None, "input_set": input_set, "log_tail": log_tail,
                                      "wall_s": float(data.get("wall_s") or 0.0)}, recipe_from=lambda _: recipe)


def _start(job: Job, job_path: Path, log_path: Path, zygote: Zygote | None) -> "subprocess.Popen | ForkedWorker":
    env = worker_env(job.threads)
    forked = zygote.spawn(str(job_path), str(log_path), env) if zygote is not None else None
    if forked is not None:
        return forked
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "hone.search._child", str(job_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # own session and process group
        )


def _kill_group(proc: "subprocess.Popen | ForkedWorker") -> None:
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
    """The log's last STDERR_TAIL_CHARS bytes, read from the end: a worker that printed
    gigabytes costs the parent no more than one that printed a line."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - STDERR_TAIL_CHARS))
            data = f.read()
    except OSError:
        return ""
    return data.decode("utf-8", "replace")

