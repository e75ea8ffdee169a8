"""Executors: where a job runs. The sweep hands an executor a job and its payload (the workload
bundle as bytes) and gets one CandidateResult per input set back; it never learns where the job
ran. The default executor starts a fresh local interpreter per job (search.worker); the Ray one
(search.ray_executor) ships the same job and bytes to a node of a Ray cluster.

Artifacts are the exception: a worker saves a build that could win into `job.artifact_dir`, a
path of the parent's store, so a remote executor must bring that folder back (or write it
through a filesystem the parent reads).

Wherever a job runs, it runs inside that machine's timing slot (search.exclusive): no two
timings share a machine's cores, whichever process or executor started them."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import weakref
from pathlib import Path
from typing import Any, Protocol

from hone.errors import InputError
from hone.search.job import Job
from hone.search.recipe import Recipe
from hone.search.result import CandidateResult

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    def run(self, recipe: Recipe, job: Job, payload: bytes, timeout_s: float) -> list[CandidateResult]:
        """Run `job` (one recipe at each of its input sets) on `payload`; one result per set,
        in the job's order, whatever happens to the worker. `timeout_s` is per input set."""
        ...


class SubprocessExecutor:
    """A worker process per job on this machine, in its own process group, killed at the
    timeout (search.worker.run_candidate), inside this machine's timing slot (so two `hone
    optimize` runs on one machine take turns per job). Workers are forked from one warm
    process that has imported torch (search.zygote), or started afresh where that cannot
    start. Each distinct payload is written once, to `workdir`. `close` (or leaving it as a
    context) ends the warm process; so does the executor's collection."""

    def __init__(self, workdir: Path, warm_start: bool = True, preload: tuple[str, ...] = ()):
        from hone.search.zygote import Zygote

        self.workdir = Path(workdir)
        self._payloads: dict[str, Path] = {}
        self._last: tuple[bytes, Path] | None = None  # the sweep passes one bytes object: no rehash
        self.count = 0
        self._zygote = Zygote(preload) if warm_start else None
        # A finalizer, not __del__: it runs once, at close, collection or exit, whichever is first.
        self.close = weakref.finalize(self, self._zygote.close) if self._zygote else (lambda: None)

    def __enter__(self) -> "SubprocessExecutor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, recipe: Recipe, job: Job, payload: bytes, timeout_s: float) -> list[CandidateResult]:
        from hone.search.exclusive import timing_slot
        from hone.search.execute import safe_name
        from hone.search.worker import run_candidate

        self.count += 1
        job_dir = self.workdir / f"{self.count:02d}-{safe_name(recipe.label)}-{recipe.key[:8]}"
        job = dataclasses.replace(job, bundle_path=str(self._payload_file(payload)), workdir=str(job_dir / "work"),
                                  result_path=str(job_dir / "result.json"))
        with timing_slot(f"candidate {recipe.label} @ {', '.join(job.input_sets)}"):
            return run_candidate(recipe, job, job_dir, timeout_s, self._zygote)

    def _payload_file(self, payload: bytes) -> Path:
        if self._last is not None and self._last[0] is payload:
            return self._last[1]
        digest = hashlib.sha256(payload).hexdigest()[:16]
        if digest not in self._payloads:
            path = self.workdir / f"bundle-{digest}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payload)
            self._payloads[digest] = path
        self._last = (payload, self._payloads[digest])
        return self._last[1]


def executor_for(executor: "Executor | str | None", ray_address: str | None = None) -> Any:
    """The executor a run asked for, as a context holding it (None inside: the sweep's default,
    a local process per job). "ray" (or a Ray address alone): a RayExecutor, which starts its
    cluster (or connects) at its first job and shuts it down on exit; an Executor object: the
    caller's, entered and left untouched. An unknown name, or ray not installed, fails here,
    before any work."""
    if executor is None and ray_address is not None:
        executor = "ray"
    if executor is None or executor == "local":
        if ray_address is not None:
            raise InputError("a Ray address goes with the ray executor", hint="--executor ray --ray-address ADDRESS")
        return contextlib.nullcontext(None)
    if not isinstance(executor, str):
        if ray_address is not None:
            raise InputError("a Ray address goes with executor='ray', not with an Executor object")
        return contextlib.nullcontext(executor)
    if executor not in EXECUTORS:
        raise InputError(f"unknown executor {executor!r}", hint=" or ".join(EXECUTORS))
    from hone._optional import is_available

    if not is_available("ray"):
        from hone.errors import MissingDependency

        raise MissingDependency("ray", "ray")
    from hone.search.ray_executor import RayExecutor

    return RayExecutor(ray_address)
