"""An executor that runs each job in this process, on a Bundle made from its payload bytes
alone (no path of the parent's): the executor seam's test double, and a fast way to run a
real sweep in a test."""

from __future__ import annotations

import dataclasses
import tempfile
import time

from hone.search._child import Stage, failure
from hone.search.result import Status
from hone.search.execute import execute
from hone.search.job import Bundle
from hone.search.worker import results_of


class InProcessExecutor:
    def __init__(self) -> None:
        self.payload_sizes: list[int] = []

    def run(self, recipe, job, payload: bytes, timeout_s: float):
        self.payload_sizes.append(len(payload))
        result: dict = {"sets": {}, "finished": False}
        stage = Stage(job.device)
        with tempfile.TemporaryDirectory(prefix="hone-test-inprocess-") as workdir:  # as a worker's ends with it
            job = dataclasses.replace(job, workdir=workdir)
            try:
                execute(job, Bundle.from_bytes(payload), stage, result, lambda: None, time.perf_counter())
            except Exception as exc:  # noqa: BLE001 - as the worker does (search._child.run): a failure outside any set
                result["error"] = failure(exc, stage.now)
        error = result.get("error")
        death = None if error is None else (Status(error["status"]), error["reason"])
        return results_of(recipe, job, result, death, "")
