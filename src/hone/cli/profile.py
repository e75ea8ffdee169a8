"""`hone profile MODEL`: where the time goes, per op, against this machine's measured roofline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from hone.cli.app import app
from hone.cli.optimize import _batch_sizes
from hone.errors import InputError


@app.command()
def profile(
    model: str = typer.Argument("minilm", help="minilm, digits-cnn, hf:<arch>, or path/to/file.py:factory"),
    input_set: Optional[str] = typer.Option(None, "--input-set", help="which input set to profile, e.g. bs8 (default: the largest)"),
    batch_sizes: Optional[str] = typer.Option(None, "--batch-sizes", help="comma-separated, e.g. 1,8 (model specs only)"),
    device: str = typer.Option("cpu", help="cpu or cuda[:N]"),
    threads: Optional[int] = typer.Option(None, help="threads (default: physical cores)"),
    scaling_max_batch: int = typer.Option(16, "--scaling-max-batch", help="largest batch of the latency-by-batch sweep"),
    top: int = typer.Option(15, help="rows per table"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="write the roofline plot to PATH.png and PATH.svg"),
    trace: Optional[Path] = typer.Option(None, "--trace", help="write a Chrome/Perfetto trace (JSON) of a few forwards"),
    nsys: Optional[Path] = typer.Option(None, "--nsys", help="re-run this profile under Nsight Systems, report to PATH (needs nsys on PATH)"),
    json_out: bool = typer.Option(False, "--json", help="print the profile as JSON on stdout"),
) -> None:
    """Split the model's time into compute, memory and overhead; rank what to try."""
    import hone
    from hone.report.profile import render

    if nsys is not None:
        _rerun_under_nsys(nsys)
        return
    from hone.cli._quiet import log_path, summary, third_party_to

    log = log_path(None, "profile")
    with third_party_to(log):  # kineto's and the backends' own output: into the log, not the terminal
        found = hone.profile(
            model,
            input_set=input_set,
            batch_sizes=_batch_sizes(batch_sizes),
            device=device,
            threads=threads,
            scaling_max_batch=scaling_max_batch,
            trace=trace,
        )
    written: list[Path] = [trace] if trace is not None else []
    if plot is not None:
        from hone.profiler.plot import plot_roofline

        written += plot_roofline(found, plot)
    if json_out:
        typer.echo(json.dumps(found.to_dict(), indent=2, default=str))
    else:
        render(found, top=top)
    for path in written:
        typer.echo(f"wrote {path}", err=True)
    noted = summary(log)
    if noted:
        typer.echo(noted, err=True)


def _rerun_under_nsys(output: Path) -> None:
    """Run this same command, minus --nsys, under `nsys profile` (stages appear as NVTX ranges)."""
    import subprocess
    import sys

    from hone.profiler.trace import nsys_command

    argv = sys.argv[1:]
    i = argv.index("--nsys")
    rest = argv[:i] + argv[i + 2 :]
    command = nsys_command([sys.executable, "-m", "hone.cli.app", *rest], output)
    if command is None:
        raise InputError("--nsys needs Nsight Systems' `nsys` on PATH", hint="install Nsight Systems, or use --trace for a torch.profiler trace")
    subprocess.run(command, check=True)
