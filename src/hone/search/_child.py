"""The worker process: `python -m hone.search._child JOB.json`.

Loads the bundle, then runs the recipe at each input set of the job (search.execute): build
once, reuse or rebuild per set, validate, and only then measure. The result file is rewritten
(atomically) after each set; when the worker dies (a signal, a hard crash, the timeout), the
parent keeps the sets it finished and classifies the rest from the exit status and the stderr
tail. Result file: {"recipe", "input_sets", "sets": {label: per-set result}, "finished",
"elapsed_s", and "error" (a failure outside any set: the load, before any set could start)}.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

from hone.atomic import write_atomic

UNEXPECTED = ("crashed", "oom")  # statuses whose result keeps the traceback or the stderr tail
PARENT_ENV = "HONE_WORKER_PARENT"  # the sweep's pid, set by search.worker.worker_env
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid: int | None) -> None:
    """End this worker when the sweep that started it dies. A worker runs in its own session
    (so a timeout can kill its whole group), so a sweep killed by a signal it cannot catch
    (SIGTERM, SIGKILL) would otherwise leave it running unseen, burning the cores the next run
    measures on. Linux: the kernel sends SIGTERM when the parent exits (prctl). Elsewhere: a
    daemon thread checks the parent once a second (no thread on Linux: nothing beside the
    timed calls)."""
    if parent_pid is None:
        return
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass
        else:
            if os.getppid() != parent_pid:  # the parent died before the prctl: no signal will come
                os._exit(1)
            return
    import threading

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="hone-parent-watch", daemon=True).start()


class Stage:
    """Where the worker is, so a failure says "build raised ..." rather than just the error,
    and how long each stage took (`take`: where a set's time went, for its row).
    On CUDA each stage is also an NVTX range, so an Nsight Systems capture reads as stages."""

    def __init__(self, device: str = "cpu") -> None:
        self.now = "load"
        self._nvtx = device.startswith("cuda")
        self._open = False
        self._since = time.perf_counter()
        self._seconds: dict[str, float] = {}

    def __call__(self, name: str) -> None:
        self._close()
        self.now = name
        if self._nvtx:
            import torch

            if self._open:
                torch.cuda.nvtx.range_pop()
            torch.cuda.nvtx.range_push(f"hone {name}")
            self._open = True

    def _close(self) -> None:
        now = time.perf_counter()
        self._seconds[self.now] = self._seconds.get(self.now, 0.0) + now - self._since
        self._since = now

    def take(self) -> dict[str, float]:
        """Seconds per stage since the last take (the worker's start for the first)."""
        self._close()
        taken, self._seconds = self._seconds, {}
        return {name: round(s, 3) for name, s in taken.items()}


def _import_main(main_path: str) -> None:
    """Make the user's script importable as __main__, as multiprocessing's spawn does, so a
    model class defined in it unpickles. Its `if __name__ == "__main__":` block does not run."""
    import runpy
    import types

    namespace = runpy.run_path(main_path, run_name="__mp_main__")
    module = types.ModuleType("__mp_main__")
    module.__dict__.update(namespace)
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module


def classify(exc: BaseException, stage: str) -> tuple[str, str]:
    from hone.errors import Unsupported, is_out_of_memory

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, Unsupported):
        return "unsupported", str(exc)
    if is_out_of_memory(exc):
        return "oom", f"out of memory during {stage}: {text}"
    return "crashed", f"{stage} raised {type(exc).__name__}: {text}"[:500]


def failure(exc: BaseException, stage: str) -> dict:
    """A per-set (or whole-worker) failure: status, reason and, for the unexpected, the traceback."""
    status, reason = classify(exc, stage)
    # A traceback only for what nobody expected: an `unsupported` is a backend (or hone)
    # saying, on purpose, that it cannot take this model; its reason is the whole story.
    tail = traceback.format_exc()[-4000:] if status in UNEXPECTED else ""
    return {"status": status, "reason": reason, "log_tail": tail}


def run(job_path: str) -> int:
    from hone.search.job import Job

    started = time.perf_counter()
    job = Job.read(Path(job_path))
    sys.path[:0] = [p for p in job.sys_path if p not in sys.path]
    stage = Stage(job.device)
    result: dict = {"recipe": job.recipe, "input_sets": job.input_sets, "sets": {}, "finished": False}
    path = Path(job.result_path)

    def write() -> None:
        result["elapsed_s"] = time.perf_counter() - started
        _write_atomic(path, result)

    try:
        import torch

        from hone._optional import block_usage_telemetry

        block_usage_telemetry()
        torch.set_num_threads(job.threads)
        if job.main_path:
            _import_main(job.main_path)
        if job.user_files:
            from hone.models.factory import import_user_files

            import_user_files(job.user_files)
        from hone.search.execute import execute
        from hone.search.job import Bundle

        bundle = Bundle.load(Path(job.bundle_path))
        execute(job, bundle, stage, result, write, started, lambda: Bundle.load(Path(job.bundle_path)).module)
    except BaseException as exc:  # noqa: BLE001 - every failure must become a result
        # Outside any set (the load, or hone itself between sets): the sets not finished share it.
        result["error"] = failure(exc, stage.now)
    write()
    return 0


def _write_atomic(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, default=str, allow_nan=True))


if __name__ == "__main__":
    die_with_parent(int(os.environ[PARENT_ENV]) if os.environ.get(PARENT_ENV) else None)
    sys.exit(run(sys.argv[1]))
