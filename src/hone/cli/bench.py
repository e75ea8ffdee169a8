"""`hone bench ARTIFACT`: time a saved artifact at each batch size x thread count.

An export directory runs its saved example inputs (resized along the batch axes its manifest
records); a bare .onnx, .pt2 or OpenVINO .xml runs data made from its declared inputs
(hone.bench.artifact). Every row is timed with the sweep's rules (bench.measure: warm-up until
stable, windows until the spread or the median settles, or the cap), in this process, with
the thread count set for torch and the runtime's own session. Peak memory is this process's
resident-set high-water mark while the row loaded and ran.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import typer

from hone.cli.app import app
from hone.errors import HoneError, InputError


def _int_list(text: str | None, option: str) -> list[int] | None:
    if not text:
        return None
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{option} takes comma-separated integers, e.g. 1,8; got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise InputError(f"{option} must be positive integers, got {text!r}")
    return values


def bench_rows(artifact, batches: list[int], thread_counts: list[int], shapes: dict[str, tuple[int, ...]],
               measure_time_s: float, warnings: list[str]) -> list[dict[str, Any]]:
    """One row per thread count x batch size: the measurement's figures, or why it did not run."""
    from hone.bench.artifact import inputs_for
    from hone.bench.measure import MeasureSettings, measure
    from hone.bench.memory import RssSampler
    from hone.bench.timers import timer_for
    from hone.plugin import first_line
    from hone.profiler.timing import threads_set

    rows = []
    for threads in thread_counts:
        for batch in batches:
            row: dict[str, Any] = {"batch_size": batch, "threads": threads}
            rows.append(row)
            inputs = inputs_for(artifact, batch, shapes, warnings)
            if isinstance(inputs, str):
                row["skipped"] = inputs
                continue
            with threads_set(threads), RssSampler() as memory:
                try:
                    call = artifact.prepare(threads, inputs)
                    started = time.perf_counter()
                    call()
                    first_call_s = time.perf_counter() - started
                except HoneError:
                    raise
                except Exception as exc:  # noqa: BLE001 - one batch it does not take is a row, not a crash
                    row["skipped"] = f"raised {first_line(exc)}"
                    continue
                m = measure(call, timer_for(artifact.device), batch_size=batch, threads=threads,
                            settings=MeasureSettings(max_time_s=measure_time_s), first_call_s=first_call_s)
            row.update(m.stats(), peak_rss_bytes=memory.peak_bytes, first_call_s=first_call_s,
                       noise_warning=m.noise_warning)
    return rows


def _serve_sweep(artifact: Path, max_p99_ms: float | None, serve_time: float, as_json: bool) -> None:
    from hone.hardware.probe import default_threads
    from hone.serve.sweep import ServeSweepSettings, candidate_from_export, run_serving_sweep

    if not (artifact / "manifest.json").is_file():
        raise InputError(f"--serve takes an export directory (hone optimize --export DIR); {artifact} is not one")
    settings = ServeSweepSettings(max_p99_ms=max_p99_ms, time_budget_s=serve_time or None)
    candidate = candidate_from_export(artifact)
    with tempfile.TemporaryDirectory(prefix="hone-serve-") as logs:
        sweep = run_serving_sweep([candidate], settings, logs, default_threads(),
                                  progress=(lambda line: None) if as_json else (lambda line: print(line, file=sys.stderr)))
    if as_json:
        typer.echo(json.dumps(sweep.to_dict(), indent=2))
        return
    from rich.console import Console

    from hone.report.console import TEXT_WIDTH
    from hone.report.serving import render_serving

    console = Console()
    render_serving(console if console.is_terminal else Console(width=TEXT_WIDTH), sweep)
    if sweep.chosen is None:
        raise HoneError(f"{artifact}: {sweep.why}")


def _per_s(value: float) -> str:
    return f"{value:.2f}/s" if value < 10 else f"{value:.1f}/s" if value < 1000 else f"{value:,.0f}/s"


def _render(artifact, rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from hone.report.console import TEXT_WIDTH, fmt_time

    console = Console()
    if not console.is_terminal:  # piped or logged: rich would assume 80 columns and squeeze the figures
        console = Console(width=TEXT_WIDTH)
    declared = ", ".join(f"{d.name}: {str(d.dtype).removeprefix('torch.')}"
                         f"[{', '.join('?' if s is None else str(s) for s in d.shape) if d.shape is not None else '...'}]"
                         for d in artifact.inputs)
    console.print(f"hone bench {escape(str(artifact.path))} ({artifact.kind}): {escape(declared)}", markup=False)
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    notes = any("skipped" in row or row.get("noise_warning") for row in rows)
    for name in ("batch", "threads", "p50", "p90", "p99", "throughput", "peak RSS", "calls", *(["note"] if notes else [])):
        table.add_column(name, justify="left" if name == "note" else "right", no_wrap=name != "note")
    for row in rows:
        if "skipped" in row:
            table.add_row(str(row["batch_size"]), str(row["threads"]), *["-"] * 6, escape(f"not run: {row['skipped']}"))
            continue
        note = [f"noisy: IQR/median {row['rel_iqr']:.0%}" if row["noise_warning"] else ""] if notes else []
        table.add_row(
            str(row["batch_size"]), str(row["threads"]), fmt_time(row["p50_s"]), fmt_time(row["p90_s"]),
            fmt_time(row["p99_s"]), _per_s(row["throughput_per_s"]), f"{row['peak_rss_bytes'] / 2**20:,.0f} MiB",
            str(row["n"]), *note,
        )  # fmt: skip
    console.print(table)


@app.command()
def bench(
    artifact: Path = typer.Argument(..., metavar="ARTIFACT", help="an export directory, a .onnx, a .pt2 or an OpenVINO .xml"),
    batch_sizes: Optional[str] = typer.Option(None, "--batch-sizes", help="comma-separated, e.g. 1,8 (default: the artifact's own)"),
    threads: Optional[str] = typer.Option(None, "--threads", help="comma-separated thread counts, e.g. 1,2 (default: physical cores)"),
    input_shape: Optional[list[str]] = typer.Option(
        None, "--input-shape", help="a bare file's dynamic dimensions made concrete, e.g. input_ids=1x128 (repeatable)"
    ),
    measure_time: float = typer.Option(8.0, "--measure-time", help="seconds of timing per row at most"),
    as_json: bool = typer.Option(False, "--json", help="print the rows as JSON"),
    serve: bool = typer.Option(
        False, "--serve", help="serve an export directory and drive it: batching x processes x threads under "
        "closed-loop and Poisson load (hone.serve.sweep)"),
    max_p99_ms: Optional[float] = typer.Option(None, "--max-p99-ms", help="with --serve: the p99 target the chosen "
                                               "configuration must meet"),
    serve_time: float = typer.Option(300.0, "--serve-time", help="with --serve: seconds for the whole serving sweep"),
) -> None:
    """Time a saved artifact: p50/p90/p99, throughput and peak memory per batch size and thread count."""
    if serve:
        _serve_sweep(artifact, max_p99_ms, serve_time, as_json)
        return
    from hone.bench.artifact import default_batch, open_artifact
    from hone.hardware.probe import default_threads
    from hone.models.options import parse_input_shapes

    shapes = parse_input_shapes(input_shape)
    batches = _int_list(batch_sizes, "--batch-sizes")
    thread_counts = _int_list(threads, "--threads")
    opened = open_artifact(artifact)
    if shapes and opened.kind == "export":
        raise InputError("--input-shape is for bare graph files; an export directory runs its saved example inputs",
                         hint="use --batch-sizes to time it at other batch sizes")
    unknown = set(shapes) - {d.name for d in opened.inputs}
    if unknown:
        raise InputError(f"--input-shape names {', '.join(sorted(unknown))}, which {artifact} does not take",
                         hint=f"its inputs: {', '.join(d.name for d in opened.inputs)}")
    recorded = ((opened.manifest or {}).get("timing") or {}).get("threads")
    warnings: list[str] = []
    rows = bench_rows(opened, batches or [default_batch(opened, shapes)], thread_counts or [recorded or default_threads()],
                      shapes, measure_time, warnings)
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    if as_json:
        typer.echo(json.dumps({"artifact": str(artifact), "kind": opened.kind, "warnings": warnings, "rows": rows,
                               "inputs": [{"name": d.name, "shape": d.shape, "dtype": str(d.dtype).removeprefix("torch.")}
                                          for d in opened.inputs]}, indent=2))
    else:
        _render(opened, rows)
    if all("skipped" in row for row in rows):
        raise HoneError(f"{artifact}: no row ran ({rows[0]['skipped']})",
                        hint="check --batch-sizes and --input-shape against the inputs it declares")
