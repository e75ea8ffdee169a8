"""Start and stop the server of an exported artifact (`hone.serve.app` under mosec).

    config = ServerConfig.for_artifact("deploy/", max_batch_size=8, max_delay_ms=5)
    with Server(config, log_path="serve.log") as server:   # waits until a real request answers
        print(server.url)                                  # http://127.0.0.1:8000/inference

The server runs in its own process group (mosec's front end and every worker), so stopping it
stops them all, and it ends with this process (the same parent-death rule as sweep workers).
Readiness is a real request: the artifact's own example inputs go through the whole pipeline
and must come back 200, so "ready" means every stage loaded, not just a listening socket.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from hone.errors import HoneError, InputError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
ROUTE = "/inference"
# Loading and warming an artifact in every worker: seconds for most, minutes for one that
# compiles at load (a torch.compile candidate of a ResNet-50, in two one-thread processes at once).
READY_TIMEOUT_S = 600.0
STOP_GRACE_S = 10.0
LOG_TAIL_CHARS = 3000
MIB = 1 << 20


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Everything one server needs; JSON-able (it reaches the worker processes as JSON)."""

    artifact: str  # an export directory (manifest.json + the runtime's product)
    label: str
    inputs: list[dict[str, Any]]  # protocol.InputSpec fields
    output_names: list[str]
    output_batch_axes: dict[str, int | None]
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_batch_size: int = 8  # requests per forward; 1: no batching
    max_delay_ms: float = 5.0  # how long a batch waits for more requests after its first
    workers: int = 1  # inference processes, each with the artifact loaded
    threads: int = 1  # per worker
    # Fields of the runtime's config to load with instead of the recorded ones: the runtime's
    # own serving knobs (Runtime.serving_variants), e.g. OpenVINO's streams.
    runtime_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    runtime_path: str | None = None  # "module:Object" of the runtime (a plugin's, outside hone)
    sys_path: list[str] = dataclasses.field(default_factory=list)
    max_request_rows: int = 1  # samples one request may carry
    max_body_bytes: int = 16 * MIB
    timeout_s: float = 10.0  # a request not answered by then gets 408
    queue_capacity: int = 1024  # admitted requests waiting; beyond: 429
    log_requests: bool = True

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "workers", "threads", "max_request_rows", "max_body_bytes", "queue_capacity"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, not {value!r}")
        if not self.max_delay_ms >= 1:
            raise InputError(f"max_delay_ms must be at least 1 ms (mosec's unit), not {self.max_delay_ms!r}")
        if not self.timeout_s > 0:
            raise InputError(f"timeout_s must be positive, not {self.timeout_s!r}")
        if not 0 <= self.port < 65536:
            raise InputError(f"port must be 0-65535, not {self.port}")

    @classmethod
    def for_artifact(cls, directory: str | Path, output_batch_axes: dict[str, int | None] | None = None,
                     label: str | None = None, **settings: Any) -> "ServerConfig":
        """A config for an export directory (checked: manifest and checksums). Output batch axes
        come from the manifest (`hone optimize --export` records them), else `output_batch_axes`,
        else dim 0."""
        from hone.export import verify
        from hone.registry import RUNTIMES
        from hone.serve.protocol import input_specs

        directory = Path(directory).resolve()
        manifest = verify(directory)
        runtime = manifest["recipe"]["runtime"]["name"]
        recorded = (manifest.get("batch_axes") or {}).get("outputs") or {}
        axes = {n: recorded.get(n, (output_batch_axes or {}).get(n, 0)) for n in manifest["output_names"]}
        examples_batch = int(manifest["inputs"][0]["shape"][0]) if manifest["inputs"] and manifest["inputs"][0]["shape"] else 1
        settings.setdefault("max_request_rows", max(1, examples_batch))
        return cls(
            artifact=str(directory),
            label=label or manifest["recipe"].get("label") or runtime,
            inputs=[dataclasses.asdict(s) for s in input_specs(manifest)],
            output_names=list(manifest["output_names"]),
            output_batch_axes=axes,
            runtime_path=RUNTIMES.path(runtime) if runtime in RUNTIMES.names() else None,
            sys_path=[p for p in sys.path if p],
            **settings,
        )

    def describe(self) -> str:
        batching = (f"batches of up to {self.max_batch_size} requests, waiting up to {self.max_delay_ms:g} ms"
                    if self.max_batch_size > 1 else "no batching")
        return f"{batching}; {self.workers} worker(s) x {self.threads} thread(s)" + (
            f"; {', '.join(f'{k}={v}' for k, v in sorted(self.runtime_config.items()))}" if self.runtime_config else "")


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((host, port)) == 0


class Server:
    """A running server (context manager): started in `__enter__` (ready when it returns),
    stopped in `__exit__`."""

    def __init__(self, config: ServerConfig, log_path: str | Path | None, ready_timeout_s: float = READY_TIMEOUT_S):
        """`log_path`: where the server's log goes (None: this process's stderr, as `hone serve`)."""
        if config.port == 0:
            config = dataclasses.replace(config, port=free_port(config.host))
        self.config = config
        self.log_path = Path(log_path) if log_path is not None else None
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.config.port}{ROUTE}"

    def __enter__(self) -> "Server":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        from hone._optional import require
        from hone.search._child import PARENT_ENV

        require("mosec")
        config = self.config
        if port_in_use(config.host, config.port):
            raise InputError(f"{config.host}:{config.port} is in use", hint="choose another with --port (0: any free one)")
        env = dict(os.environ)
        env["HONE_SERVE_CONFIG"] = json.dumps(dataclasses.asdict(config))
        env[PARENT_ENV] = str(os.getpid())
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env["PYTHONUNBUFFERED"] = "1"
        args = [sys.executable, "-m", "hone.serve.app", "--address", config.host, "--port", str(config.port),
                "--timeout", str(int(config.timeout_s * 1000)), "--capacity", str(config.queue_capacity),
                "--max-request-size", str(config.max_body_bytes), "--log-level", "error"]
        started = time.perf_counter()
        if self.log_path is None:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        else:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             env=env, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - started

    def _wait_ready(self) -> None:
        from hone.serve.protocol import encode_request

        body = encode_request(example_inputs(self.config))
        deadline = time.monotonic() + self.ready_timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise HoneError(f"the server of {self.config.label} exited with code {self.proc.returncode} while starting: "
                                f"{self.log_tail()}")
            try:
                status, text = post(self.url, body, timeout_s=self.config.timeout_s)
            except OSError as exc:  # not listening yet
                last = str(exc)
                time.sleep(0.2)
                continue
            if status == 200:
                return
            last = f"HTTP {status}: {text[:200]}"
            if status not in (408, 429, 503):  # anything but "busy" or "starting" will not change by waiting
                raise HoneError(f"the server of {self.config.label} failed its own example inputs ({last}): "
                                f"{self.log_tail()}")
            time.sleep(0.2)
        raise HoneError(f"the server of {self.config.label} was not ready after {self.ready_timeout_s:g} s ({last}): "
                        f"{self.log_tail()}")

    def stop(self) -> None:
        """SIGINT to the group (mosec shuts its workers down and removes its socket folder),
        SIGKILL after a grace period."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
        try:  # workers mosec left behind (it exits before they do on a slow shutdown)
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        if self.log_path is None:
            return "(its log is above)"
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return text[-LOG_TAIL_CHARS:].strip() or "(empty log)"


def example_inputs(config: ServerConfig, rows: int | None = 1) -> dict[str, Any]:
    """The first `rows` samples (None: all) of the artifact's own example inputs, by name."""
    from safetensors.numpy import load_file

    manifest = json.loads((Path(config.artifact) / "manifest.json").read_text())
    tensors = load_file(str(Path(config.artifact) / manifest["examples"]))
    return {spec["name"]: tensors[f"input.{i}"][:rows] for i, spec in enumerate(config.inputs)}


def post(url: str, body: bytes, timeout_s: float = 10.0) -> tuple[int, str]:
    """One request with the standard library (readiness, tests): (status, body text)."""
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
