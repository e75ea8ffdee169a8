"""The server process of `hone serve`: mosec's HTTP front end (Rust) with two Python stages.

    POST /inference -> Admit (1 process)      parse and check one request; a bad one is refused
                                              here, alone, with a 4xx and its reason
                    -> Infer (N processes)    mosec batches admitted requests (at most
                                              max_batch_size, waiting at most max_delay_ms);
                                              one forward per batch, each request gets its rows

Checking in a stage of its own is what keeps one bad request from failing its batch: mosec
gives a whole batch one status, so a refusal raised inside the batched stage would refuse every
request that shared the batch. The front end itself refuses bodies over the size limit (413)
and requests beyond the queue's capacity (429), and times out a request the workers do not
answer in time (408).

Run as `python -m hone.serve.app --address A --port P ...` (mosec reads its own options from
the command line) with HONE_SERVE_CONFIG set to a ServerConfig as JSON; `hone.serve.server`
starts it so. mosec is optional (hone[serve]): without it this module still imports, its
classes are inert, and `main` says what to install.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

try:  # a module-level base class: mosec spawns workers and finds their class by its import path
    from mosec import Worker as _MosecWorker
    from mosec.errors import ClientError, ValidationError
except ImportError:  # hone[serve] not installed: importable, unusable (main() says why)
    _MosecWorker = object  # type: ignore[assignment,misc]
    ClientError = ValidationError = Exception  # type: ignore[assignment,misc]

CONFIG_ENV = "HONE_SERVE_CONFIG"
WARM_SIZES_MAX = 32  # batch sizes warmed one by one at start; beyond, only the largest
log = logging.getLogger("hone.serve")


def _config() -> dict[str, Any]:
    return json.loads(os.environ[CONFIG_ENV])


def _end_with(parent: int | None) -> None:
    """End this process when `parent` dies (the sweep's rule for its workers): a server left
    behind would hold its port and burn the cores the next measurement runs on."""
    from hone.search._child import die_with_parent

    die_with_parent(parent)


def _setup_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s[%(process)d] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


class Admit(_MosecWorker):
    """Stage 1: the request's bytes -> checked arrays, or a 4xx with a one-line reason."""

    def __init__(self) -> None:
        super().__init__()
        from hone.serve.protocol import InputSpec

        _end_with(os.getppid())
        _setup_logging()
        config = _config()
        self.specs = [InputSpec(s["name"], s["dtype"], tuple(s["sample_shape"])) for s in config["inputs"]]
        self.max_rows = int(config["max_request_rows"])
        self.output_names = list(config["output_names"])
        self.log_requests = bool(config.get("log_requests", True))

    def deserialize(self, data: bytes) -> bytes:
        return data  # parsed in forward, where a refusal can say exactly what is wrong

    def forward(self, data: bytes) -> dict[str, Any]:
        from hone.serve.protocol import RequestError, decode_request

        try:
            request = decode_request(data, self.specs, self.max_rows, self.output_names)
        except RequestError as exc:
            if self.log_requests:
                log.info("refused %d: %s", exc.status, exc.reason)
            raise (ValidationError if exc.status == 422 else ClientError)(exc.reason) from None
        if self.log_requests:
            log.info("request: %d sample(s), %d bytes", request.rows, len(data))
        return {"arrays": [request.arrays[s.name] for s in self.specs], "rows": request.rows,
                "outputs": request.outputs}


class Infer(_MosecWorker):
    """Stage 2: one forward over every admitted request of a batch, each request's rows back."""

    def __init__(self) -> None:
        super().__init__()
        _end_with(os.getppid())
        _setup_logging()
        config = _config()
        threads = int(config["threads"])
        import torch

        torch.set_num_threads(threads)
        sys.path[:0] = [p for p in config.get("sys_path", []) if p not in sys.path]
        from hone.export import load

        started = time.perf_counter()
        self.output_names = list(config["output_names"])
        self.output_axes = [config["output_batch_axes"].get(n, 0) for n in self.output_names]
        self.runner = load(config["artifact"], threads=threads, config=config.get("runtime_config") or None,
                           runtime_path=config.get("runtime_path"), output_batch_axes=self.output_axes)
        self.log_requests = bool(config.get("log_requests", True))
        loaded = time.perf_counter() - started
        warmed = self._warm(config)
        log.info("worker ready: %s loaded in %.2f s, warmed at %d batch size(s) in %.2f s, %d thread(s)", config["label"],
                 loaded, len(warmed), time.perf_counter() - started - loaded, threads)

    def _warm(self, config: dict[str, Any]) -> list[int]:
        """Run every batch size a batch of single-sample requests can make (1 .. max_batch_size)
        and the largest a batch can hold, before the server says it is ready. A build that
        compiles per shape on its first call there (torch.compile, an OpenVINO IR reshaped)
        would otherwise compile inside a request, past its timeout, while the load is on."""
        import torch
        from safetensors.torch import load_file

        from hone.export import read_manifest

        manifest = read_manifest(config["artifact"])
        examples = load_file(str(Path(config["artifact"]) / manifest["examples"]))
        inputs = [examples[f"input.{i}"] for i in range(len(manifest["inputs"]))]
        batch = int(config["max_batch_size"])
        sizes = sorted({*range(1, min(batch, WARM_SIZES_MAX) + 1), batch * int(config["max_request_rows"])})
        warmed = []
        for rows in sizes:
            index = torch.arange(rows) % inputs[0].shape[0]  # the examples' rows, repeated
            tensors = tuple(t[index] for t in inputs)
            if rows > 1 and not self.runner.serves(tensors):
                continue  # served request by request (_forward): nothing to warm
            self.runner(*tensors)
            warmed.append(rows)
        return warmed

    def forward(self, data: list[dict[str, Any]] | dict[str, Any]) -> list[dict[str, Any]] | dict[str, Any]:
        if not isinstance(data, list):  # mosec hands an unbatched stage (max_batch_size 1) one request
            return self._forward([data])[0]
        return self._forward(data)

    def _forward(self, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import torch

        started = time.perf_counter()
        rows = [d["rows"] for d in data]
        inputs = tuple(torch.from_numpy(np.concatenate([d["arrays"][i] for d in data]))
                       for i in range(len(data[0]["arrays"])))
        if len(data) > 1 and not self.runner.serves(inputs):
            # A build that takes only some batch sizes (a static engine): each request alone.
            per_request = [self._run(tuple(torch.from_numpy(np.array(a)) for a in d["arrays"]), [d["rows"]])[0]
                           for d in data]
        else:
            per_request = self._run(inputs, rows)
        total = sum(rows)
        if self.log_requests:
            log.info("batch: %d request(s), %d row(s) in %.2f ms", len(data), total, (time.perf_counter() - started) * 1e3)
        return [{"outputs": {n: a for n, a in outputs.items() if d.get("outputs") is None or n in d["outputs"]},
                 "requests": len(data), "rows": total} for d, outputs in zip(data, per_request)]

    def _run(self, inputs: tuple, rows: list[int]) -> list[dict[str, np.ndarray]]:
        import torch

        # numpy has no bfloat16: such an output goes back as float32, which holds it exactly.
        outputs = [o.detach().to("cpu", torch.float32 if o.dtype == torch.bfloat16 else o.dtype)
                   for o in self.runner(*inputs)]
        split: list[dict[str, np.ndarray]] = [{} for _ in rows]
        for name, out, axis in zip(self.output_names, outputs, self.output_axes):
            array = out.numpy()
            if axis is None:  # no batch axis (a per-model constant): every request gets it whole
                for part in split:
                    part[name] = array
                continue
            bounds = np.cumsum(rows)[:-1]
            for part, piece in zip(split, np.split(array, bounds, axis=axis)):
                part[name] = piece
        return split

    def serialize(self, data: dict[str, Any]) -> bytes:
        from hone.serve.protocol import encode_response

        return encode_response(data["outputs"], data["requests"], data["rows"])


def main() -> None:
    from hone._optional import require
    from hone.search._child import PARENT_ENV

    require("mosec")
    from mosec import Server

    _end_with(int(os.environ[PARENT_ENV]) if os.environ.get(PARENT_ENV) else None)
    config = _config()
    server = Server()
    # Each worker's thread pools are sized before its libraries start (OpenMP reads these once).
    threads = str(config["threads"])
    env = [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
           for _ in range(int(config["workers"]))]
    server.append_worker(Admit, num=1, max_batch_size=1)
    server.append_worker(Infer, num=int(config["workers"]), max_batch_size=int(config["max_batch_size"]),
                         max_wait_time=max(1, int(round(config["max_delay_ms"]))), env=env,
                         timeout=float(config["timeout_s"]))
    server.run()


if __name__ == "__main__":
    main()
