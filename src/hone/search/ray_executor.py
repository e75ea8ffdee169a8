"""Candidates as Ray tasks: `--executor ray`. Each job runs on a node of a Ray cluster (a local
one started for the run, or `--ray-address`) in the same worker machinery as the local executor
(search.worker: a fresh interpreter in its own process group, killed at the timeout), inside
that node's timing slot (search.exclusive). The sweep, the store and selection stay in the
driver: results are written by the driver as each task lands.

What travels: the payload (the workload bundle) goes to Ray's object store once per sweep and
is written once per node (cached by digest, fetched only by a node that lacks it); a job's
saved artifacts come back as a tar and are unpacked into `job.artifact_dir`, the path of the
driver's store, with the results' artifact paths rewritten to it; an earlier run's artifacts that
a job may load instead of building (`job.prebuilt`) go with the job the same way.

A task whose Ray worker or node dies (killed, out of memory, the node lost) gives every input
set of its job `crashed` (`oom` for Ray's memory monitor) with the Ray exception's first line,
and the sweep goes on. Tasks are never retried: a candidate that killed its worker once would
only do it again.

Ray is imported only here, and only when an executor starts: `import hone` never imports it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import shutil
import tarfile
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from hone.search.job import Job
from hone.search.recipe import Recipe
from hone.search.result import CandidateResult, Status

LOG_TAIL_CHARS = 3000
CLEANUP_TIMEOUT_S = 30.0  # removing a session's cached payloads from every node, at the end
GPU_TYPE_PREFIX = "accelerator_type:"  # how a Ray node advertises its GPU model


class RayExecutor:
    """Runs jobs as Ray tasks: `num_cpus=job.threads`, and on CUDA one GPU of one model for the
    whole sweep (`accelerator_type`, default the cluster's most common), so every candidate is
    timed on the same kind of device. `address`: a running cluster ("auto", "ray://host:10001",
    "host:6379"); None: the Ray session this process already has, else a new local one for the
    executor's life (`num_cpus`: its CPUs, default this machine's). Thread-safe: several sweeps
    (one per model) share one executor. Use as a context manager, or call close()."""

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None,
                 accelerator_type: str | None = None):
        self.address = address
        self.num_cpus = num_cpus
        self.accelerator_type = accelerator_type
        self._ray: Any = None
        self._remote: Any = None
        self._shutdown_at_close = False
        self._guard = threading.RLock()
        self._closing = threading.Event()
        self._in_flight: set[Any] = set()
        self._payloads: dict[int, tuple[bytes, str, Any]] = {}  # id(bytes) -> (bytes, digest, ObjectRef)
        self._session = uuid.uuid4().hex[:12]  # this executor's folder on every node
        self._driver_node = ""
        self._driver_lock = ""

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connecting ----------------------------------------------------------------------------

    def start(self, threads: int = 1) -> Any:
        """Connect to the cluster, or start the local one (once); returns the `ray` module.
        Call it from the main thread before sharing the executor between threads: Ray installs
        its signal handlers there."""
        with self._guard:
            if self._closing.is_set():
                raise KeyboardInterrupt("the Ray executor was closed")
            if self._ray is not None:
                return self._ray
            from hone._optional import require
            from hone.search.exclusive import lock_path

            ray = require("ray", "ray")
            # No usage report to Ray's servers from the cluster we start (and no wait on a
            # machine without internet), unless the user asked for it.
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            if not ray.is_initialized():
                self._init(ray, threads)
                self._shutdown_at_close = True
            self._remote = ray.remote(_run_on_node)
            # Tasks on the driver's own node take the driver's lock file: the driver's reference
            # and profile and those tasks share one machine's cores.
            try:
                self._driver_node = ray.get_runtime_context().get_node_id()
            except Exception:  # noqa: BLE001 - a Ray Client driver is on no node: every node has its own lock
                self._driver_node = ""
            self._driver_lock = str(lock_path())
            self._ray = ray
            return ray

    def _init(self, ray: Any, threads: int) -> None:
        from hone.errors import InputError

        quiet = dict(logging_level=logging.ERROR, log_to_driver=False)
        if self.address is None:
            # "local": a new cluster of our own even where another one runs on this machine (a
            # bare init() would join the last one started here).
            cpus = self.num_cpus or max(os.cpu_count() or 1, threads)
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)
            return
        try:
            ray.init(address=self.address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise InputError(f"cannot connect to the Ray cluster at {self.address!r}: {exc}",
                             hint="start one with `ray start --head`, or leave out --ray-address for a local one") from exc

    # -- running a job -------------------------------------------------------------------------

    def run(self, recipe: Recipe, job: Job, payload: bytes, timeout_s: float) -> list[CandidateResult]:
        from hone.search.worker import results_from, results_of

        ray = self.start(job.threads)
        refusal = self._cannot_place(ray, job)
        if refusal:
            return results_of(recipe, job, {}, (Status.UNSUPPORTED, refusal), "")
        digest, payload_ref = self._payload(ray, payload)
        what = f"candidate {recipe.label} @ {', '.join(job.input_sets)}"
        started = time.perf_counter()
        task = self._remote.options(name=f"hone {what}"[:120], **self._resources(ray, job)).remote(
            job, [payload_ref], digest, _pack_prebuilt(job), timeout_s, self._driver_node, self._driver_lock,
            self._session, what,
        )
        with self._guard:
            self._in_flight.add(task)
        try:
            outcome, packed, remote_dir = ray.get(task)
        except ray.exceptions.RayError as exc:
            if self._closing.is_set():  # cancelled by close(): an interruption, not a result
                raise KeyboardInterrupt("the Ray executor was closed") from exc
            return self._died(recipe, job, exc, time.perf_counter() - started)
        except BaseException:
            # Ctrl-C in the driver: the task must not go on timing on a node nobody watches.
            ray.cancel(task, force=True)
            raise
        finally:
            with self._guard:
                self._in_flight.discard(task)
        if packed is not None and job.artifact_dir:
            _bring_back(outcome.data, packed, remote_dir, Path(job.artifact_dir))
        return results_from(recipe, job, outcome)

    def _died(self, recipe: Recipe, job: Job, exc: BaseException, wall_s: float) -> list[CandidateResult]:
        """Every set of the job (or its first, for a job that stops at a failure) gets the
        death: `oom` when Ray's memory monitor killed the worker, else `crashed`."""
        from hone.plugin import first_line
        from hone.search.worker import share_wall, results_of

        ray = self._ray
        cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None else exc
        status = Status.OOM if isinstance(exc, ray.exceptions.OutOfMemoryError) else Status.CRASHED
        reason = f"the Ray task died ({first_line(cause)})"[:500]
        results = results_of(recipe, job, {}, (status, reason), str(exc)[-LOG_TAIL_CHARS:])
        share_wall(results, wall_s)
        return results

    def _payload(self, ray: Any, payload: bytes) -> tuple[str, Any]:
        """The payload's digest and its object in Ray's store, put once per distinct payload
        (the sweep passes the same bytes object to every job: no rehash)."""
        with self._guard:
            known = self._payloads.get(id(payload))
            if known is not None and known[0] is payload:
                return known[1], known[2]
        digest = hashlib.sha256(payload).hexdigest()[:16]
        ref = ray.put(payload)
        with self._guard:
            self._payloads[id(payload)] = (payload, digest, ref)  # the bytes kept: the id stays theirs
        return digest, ref

    def _resources(self, ray: Any, job: Job) -> dict[str, Any]:
        options: dict[str, Any] = dict(num_cpus=job.threads, max_retries=0, retry_exceptions=False)
        if job.device.startswith("cuda"):
            options["num_gpus"] = 1
            gpu_type = self._gpu_type(ray)
            if gpu_type:
                options["accelerator_type"] = gpu_type
        return options

    def _cannot_place(self, ray: Any, job: Job) -> str | None:
        """Why no node of the cluster can run the job (it would wait forever), or None."""
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        cpus = max((r.get("CPU", 0.0) for r in nodes), default=0.0)
        if cpus < job.threads:
            return (f"no node of the Ray cluster has {job.threads} CPUs for this candidate's threads "
                    f"(the largest has {cpus:g}); use --threads or a larger node")
        if job.device.startswith("cuda") and not any(r.get("GPU", 0.0) >= 1 for r in nodes):
            return f"device {job.device} asked for, but no node of the Ray cluster has a GPU"
        return None

    def _gpu_type(self, ray: Any) -> str | None:
        """One GPU model for the whole sweep: the one asked for, else the cluster's most common
        (ratios are taken within one run, so every candidate must run on the same kind)."""
        with self._guard:
            if self.accelerator_type is None:
                counts: dict[str, float] = {}
                for node in ray.nodes():
                    resources = node.get("Resources", {}) if node.get("Alive") else {}
                    for name in resources:
                        if name.startswith(GPU_TYPE_PREFIX):
                            kind = name[len(GPU_TYPE_PREFIX):]
                            counts[kind] = counts.get(kind, 0.0) + resources.get("GPU", 0.0)
                if counts:
                    self.accelerator_type = sorted(counts, key=lambda k: (-counts[k], k))[0]
            return self.accelerator_type

    # -- the end -------------------------------------------------------------------------------

    def interrupt(self) -> None:
        """Cancel every task in flight (their workers are killed, and their candidates with
        them); the sweeps waiting on them stop as if interrupted (KeyboardInterrupt), and so
        does any later run()."""
        with self._guard:
            self._closing.set()
            in_flight = list(self._in_flight)
        for task in in_flight:
            try:
                self._ray.cancel(task, force=True)
            except Exception:  # noqa: BLE001 - already finished, or the cluster is gone
                pass

    def close(self) -> None:
        """Interrupt what still runs, remove this executor's files from the nodes, and shut down
        the local cluster (or the connection) this executor started."""
        self.interrupt()
        ray = self._ray
        if ray is None:
            return
        try:
            self._forget_session(ray)
        finally:
            self._payloads.clear()
            if self._shutdown_at_close:
                ray.shutdown()
            self._ray = None

    def _forget_session(self, ray: Any) -> None:
        """Best effort: this session's cached payloads off every node (a node that is gone or
        busy keeps them in its temp folder)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        forget = ray.remote(_forget_session)
        refs = [forget.options(num_cpus=0, max_retries=0,
                               scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                .remote(self._session) for node in ray.nodes() if node.get("Alive")]
        try:
            ray.get(refs, timeout=CLEANUP_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - leftovers in a temp folder, not a failure of the run
            pass


# -- on the node ---------------------------------------------------------------------------------


def _session_dir(session: str) -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"hone-ray-{uid}" / session


def _forget_session(session: str) -> None:
    shutil.rmtree(_session_dir(session), ignore_errors=True)


def _run_on_node(job: Job, payload_box: list, digest: str, prebuilt: dict[str, bytes], timeout_s: float,
                 driver_node: str, driver_lock: str, session: str, what: str) -> tuple[Any, bytes | None, str | None]:
    """The Ray task: the job in a local worker (search.worker.run_worker) inside this node's
    timing slot. Returns the worker's outcome, its saved artifacts as a tar (or None) and the
    folder they were saved in here (to rewrite the results' paths on the driver)."""
    import ray

    from hone.search.exclusive import timing_slot
    from hone.search.worker import run_worker

    here = _session_dir(session)
    bundle = here / f"bundle-{digest}.pt"
    if not bundle.exists():  # the first job of this payload on this node: fetch it only then
        here.mkdir(parents=True, exist_ok=True)
        partial = here / f".bundle-{digest}-{uuid.uuid4().hex}"
        partial.write_bytes(ray.get(payload_box[0]))
        os.replace(partial, bundle)  # atomic: a job beside this one reads a whole file or none
    job_dir = here / "jobs" / uuid.uuid4().hex[:12]
    artifact_dir = job_dir / "artifacts"
    try:
        job = dataclasses.replace(
            job, bundle_path=str(bundle), workdir=str(job_dir / "work"), result_path=str(job_dir / "result.json"),
            artifact_dir=str(artifact_dir) if job.artifact_dir else None,
            prebuilt=_unpack_prebuilt(job.prebuilt, prebuilt, job_dir / "prebuilt"),
            # Ray hands the task its GPU as CUDA_VISIBLE_DEVICES: it is device 0 in here.
            device="cuda" if job.device.startswith("cuda") else job.device,
        )
        on_driver_node = ray.get_runtime_context().get_node_id() == driver_node
        with timing_slot(f"{what} (Ray task)", driver_lock if on_driver_node else None):
            outcome = run_worker(job, job_dir, timeout_s)
        packed = _pack(artifact_dir) if artifact_dir.is_dir() and any(artifact_dir.iterdir()) else None
        return outcome, packed, str(artifact_dir)
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


# -- folders as bytes ----------------------------------------------------------------------------


def _pack(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:  # uncompressed: weights barely compress
        tar.add(folder, arcname=".")
    return buffer.getvalue()


def _unpack(data: bytes, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(into, filter="data")  # no absolute paths, no `..`, no device files


def _pack_prebuilt(job: Job) -> dict[str, bytes]:
    """The earlier run's artifacts this job may load, by their folder on the driver."""
    folders = {entry["dir"] for entry in job.prebuilt.values() if entry.get("dir")}
    return {folder: _pack(Path(folder)) for folder in sorted(folders) if Path(folder).is_dir()}


def _unpack_prebuilt(entries: dict[str, dict[str, str]], packed: dict[str, bytes], into: Path) -> dict[str, dict[str, str]]:
    """`job.prebuilt` with each folder unpacked here and its path rewritten; an entry whose
    folder did not travel keeps its path (the worker builds instead, with a note)."""
    here: dict[str, str] = {}
    for index, (folder, data) in enumerate(packed.items()):
        _unpack(data, into / str(index))
        here[folder] = str(into / str(index))
    return {label: {**entry, "dir": here.get(entry.get("dir", ""), entry.get("dir", ""))}
            for label, entry in entries.items()}


def _bring_back(data: dict, packed: bytes, remote_dir: str | None, target: Path) -> None:
    """The task's artifacts unpacked into the driver's `target`, and every set's artifact path
    pointed there. A folder that cannot be written leaves the sets without an artifact, with
    the reason (they keep their measurements)."""
    try:
        _unpack(packed, target)
    except (OSError, tarfile.TarError) as exc:
        for entry in (data.get("sets") or {}).values():
            if entry.get("artifact") and entry["artifact"].get("dir"):
                entry["artifact"] = {"unsaved": f"the artifact could not be brought back from the Ray node: {exc}",
                                     "input_sets": entry["artifact"].get("input_sets", [])}
        return
    for entry in (data.get("sets") or {}).values():
        artifact = entry.get("artifact")
        if artifact and artifact.get("dir") and remote_dir and artifact["dir"].startswith(remote_dir):
            artifact["dir"] = str(target / os.path.relpath(artifact["dir"], remote_dir))
