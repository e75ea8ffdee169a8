"""`hone serve DIR`: serve an exported artifact over HTTP with dynamic batching (hone.serve)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from hone.cli.app import app
from hone.errors import HoneError


@app.command()
def serve(
    artifact: Path = typer.Argument(..., metavar="DIR", help="an export directory (hone optimize --export DIR)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000, "--port", help="port to listen on (0: any free one)"),
    max_batch_size: int = typer.Option(8, "--max-batch-size", help="requests served by one forward at most (1: no batching)"),
    max_delay_ms: float = typer.Option(5.0, "--max-delay-ms", help="how long a batch waits for more requests after its first"),
    workers: int = typer.Option(1, "--workers", help="inference processes, each with the artifact loaded"),
    threads: Optional[int] = typer.Option(None, "--threads", help="threads per worker (default: physical cores / workers)"),
    max_request_rows: Optional[int] = typer.Option(
        None, "--max-request-rows", help="samples one request may carry (default: the exported examples' batch)"),
    max_body_mb: float = typer.Option(16.0, "--max-body-mb", help="larger request bodies are refused with 413"),
    timeout: float = typer.Option(10.0, "--timeout", help="seconds before an unanswered request gets 408"),
    queue: int = typer.Option(1024, "--queue", help="requests waiting at most; beyond that 429"),
    no_request_log: bool = typer.Option(False, "--no-request-log", help="do not log every request and batch"),
) -> None:
    """Serve an exported artifact: POST JSON or MessagePack {"inputs": {...}} to /inference."""
    from hone.hardware.probe import default_threads
    from hone.serve.server import MIB, Server, ServerConfig, example_inputs

    settings = dict(host=host, port=port, max_batch_size=max_batch_size, max_delay_ms=max_delay_ms, workers=workers,
                    threads=threads or max(1, default_threads() // max(1, workers)),
                    max_body_bytes=int(max_body_mb * MIB), timeout_s=timeout, queue_capacity=queue,
                    log_requests=not no_request_log)
    if max_request_rows is not None:
        settings["max_request_rows"] = max_request_rows
    config = ServerConfig.for_artifact(artifact, **settings)
    typer.echo(f"starting {config.label} from {config.artifact} ({config.describe()})", err=True)
    with Server(config, None) as server:
        example = {n: a.tolist() for n, a in example_inputs(config).items()}
        body = json.dumps({"inputs": example})
        typer.echo(f"serving {config.label} at {server.url} (ready in {server.startup_s:.1f} s)")
        typer.echo(f"inputs: {', '.join(_describe(s) for s in config.inputs)}; up to {config.max_request_rows} "
                   "sample(s) per request", err=True)
        typer.echo(f"try: curl -s {server.url} -d '{body if len(body) < 300 else body[:120] + ' ...'}'", err=True)
        typer.echo("Ctrl-C stops it", err=True)
        try:
            while server.alive():
                time.sleep(0.5)
        except KeyboardInterrupt:
            typer.echo("stopping", err=True)
            return
        raise HoneError(f"the server exited with code {server.proc.returncode if server.proc else '?'}; its log is above")


def _describe(spec: dict) -> str:
    dims = ", ".join(["N", *map(str, spec["sample_shape"])])
    return f"{spec['name']}: {spec['dtype']}[{dims}]"
