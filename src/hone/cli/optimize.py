"""`hone optimize [MODEL]...`: the whole sweep, a table, the winner and why; several models each
get their own (search.many: side by side under --executor ray)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from hone.api import DEFAULT_MODEL, DEFAULT_PATIENCE, DEFAULT_TIME_BUDGET_S, DEFAULT_WORKER_MEMORY
from hone.cli._quiet import log_path, summary, third_party_to
from hone.cli.app import app
from hone.errors import InputError


def _batch_sizes(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        sizes = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--batch-sizes takes comma-separated integers, e.g. 1,8; got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise InputError(f"--batch-sizes must be positive integers, got {text!r}")
    return sizes


def _serving(wanted: bool, top: int, seconds: float):
    """The serving sweep's settings (its p99 target is --max-p99-ms, added by optimize)."""
    if not wanted:
        return None
    from hone.serve.sweep import ServeSweepSettings

    return ServeSweepSettings(top=top, time_budget_s=seconds or None)


def _labels(values: list[str] | None) -> list[str] | None:
    return [v for value in values or [] for v in value.split(",") if v] or None


@app.command()
def optimize(
    model: Optional[list[str]] = typer.Argument(
        None, metavar="MODEL", show_default=False,
        help="minilm (default), digits-cnn, hf:<arch> (resnet-50, vit, bert, gpt2, ...), path/to/file.py:factory, "
        "model.onnx, program.pt2, model.jit, a transformers folder, or a pickle with --trust-pickle; several: each its "
        "own run and table (side by side under --executor ray)",
    ),
    device: str = typer.Option("cpu", help="cpu or cuda[:N]"),
    batch_sizes: Optional[str] = typer.Option(None, "--batch-sizes", help="comma-separated, e.g. 1,8 (model specs only)"),
    threads: Optional[int] = typer.Option(None, help="threads for every candidate (default: physical cores)"),
    accuracy_budget: str = typer.Option("0.01", help='allowed drop of the task metric: 0.01 (absolute) or "1%" (of the fp32 score)'),
    calibration: Optional[Path] = typer.Option(
        None, "--calibration", help="calibration data for quantization: .npz or .safetensors, one array per model input "
        "(named like it), samples on dim 0"
    ),
    eval_data: Optional[Path] = typer.Option(
        None, "--eval", help="eval data, laid out like --calibration, with class labels under 'labels' if any"
    ),
    metric: Optional[str] = typer.Option(
        None, "--metric", help="task metric on the eval data: top1, top1_agreement, embedding_cosine, neighbour_agreement "
        "(default for --eval: top1 with labels, embedding_cosine without)"
    ),
    fallback_attempts: int = typer.Option(3, help="retries of a quantized candidate over budget, keeping more layers in float (0: off)"),
    timeout: float = typer.Option(600.0, help="seconds per candidate before its worker is killed"),
    worker_memory: str = typer.Option(
        str(DEFAULT_WORKER_MEMORY), "--worker-memory",
        help="each worker's memory limit: a fraction of this machine's memory, a size (6GiB), or off; "
        "a candidate past it is oom",
    ),
    time_budget: float = typer.Option(
        DEFAULT_TIME_BUDGET_S, "--time-budget",
        help="seconds for the whole run; recipes that no longer fit are left out and listed (0: no limit)",
    ),
    patience: int = typer.Option(
        DEFAULT_PATIENCE, "--patience",
        help="stop once this many candidates in a row were clearly slower than the best or failed; "
        "the rest is listed as not run (0: spend the whole time budget)",
    ),
    measure_time: float = typer.Option(8.0, help="seconds of timing per candidate at most"),
    recipe: Optional[list[str]] = typer.Option(
        None, "--recipe",
        help="run exactly this stack of steps (repeatable), e.g. channels-last+inductor or pt2e-int8+aoti; eager always runs",
    ),
    list_recipes: bool = typer.Option(False, "--list-recipes", help="print what this machine composes for the model, run nothing"),
    only: Optional[list[str]] = typer.Option(None, "--only", help="recipe labels of the default plan to run (eager always runs)"),
    skip: Optional[list[str]] = typer.Option(None, "--skip", help="recipe labels to leave out"),
    db: Optional[Path] = typer.Option(None, "--db", help="run store (default ./hone-runs/hone.db or $HONE_DB)"),
    no_store: bool = typer.Option(False, "--no-store", help="keep results in memory only"),
    resume: bool = typer.Option(False, "--resume", help="continue the latest unfinished run of the same model and settings"),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="rebuild recipes the store records as unsupported, crashed or oom for this model, "
        "machine and library versions (default: reported from that run, not rebuilt)"
    ),
    explore: bool = typer.Option(
        False, "--explore", help="build everything the plan holds, even what an earlier run of this model here "
        "measured clearly slower than its winner or over the accuracy budget (and retry known failures)"
    ),
    json_out: bool = typer.Option(False, "--json", help="print the run as JSON on stdout (progress stays on stderr)"),
    no_profile: bool = typer.Option(False, "--no-profile", help="plan without profiling first (no advice ordering or pruning)"),
    export: Optional[Path] = typer.Option(
        None, "--export", help="save the winner's deployable artifact and manifest.json here (hone.load reads it)"
    ),
    objective: str = typer.Option(
        "latency", "--objective", help="what best means: latency (at the batch sizes), throughput, memory or cost ($ / 1M inferences)"
    ),
    max_p99_ms: Optional[float] = typer.Option(None, "--max-p99-ms", help="the winner's p99 at every input set at most this"),
    max_memory_mb: Optional[float] = typer.Option(
        None, "--max-memory-mb", help="the winner's peak memory (MiB) at every input set at most this"
    ),
    price_table: Optional[Path] = typer.Option(
        None, "--price-table", help="price this machine from a table of your own (the schema of hone/cost/prices.json)",
        dir_okay=False,
    ),
    price_per_hour: Optional[float] = typer.Option(
        None, "--price-per-hour", help="this machine's price, $ per hour: adds $ / 1M to the report"
    ),
    instance: Optional[str] = typer.Option(
        None, "--instance", help="price this machine as this price-table row (e.g. c7a.large); default with "
        "--objective cost: the closest match, said in the report"
    ),
    input_shape: Optional[list[str]] = typer.Option(
        None, "--input-shape", help="a model file's dynamic dimensions made concrete, e.g. input_ids=1x128 (repeatable)"
    ),
    trust_pickle: bool = typer.Option(
        False, "--trust-pickle", help="allow a full pickle (.pt/.pth/.bin): unpickling runs its code; recorded in the run"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print the verdict only (no progress, no table)"),
    serve_sweep: bool = typer.Option(
        False, "--serve-sweep", help="after selection, serve the top candidates behind a real server (hone serve) "
        "and drive them over batching x processes x threads; the most throughput with p99 within --max-p99-ms wins"
    ),
    serve_top: int = typer.Option(2, "--serve-top", help="with --serve-sweep: how many of the best candidates to serve"),
    serve_time: float = typer.Option(
        300.0, "--serve-time", help="with --serve-sweep: seconds for the serving sweep (0: no limit)"
    ),
    executor: Optional[str] = typer.Option(
        None, "--executor", show_default=False, help="where candidates run: local (default: a fresh process each, "
        "here) or ray (Ray tasks; needs the ray extra)"
    ),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", help="the Ray cluster for --executor ray (e.g. auto, ray://host:10001); "
        "default: a local Ray started for the run; implies --executor ray"
    ),
) -> None:
    """Try every optimization that fits this machine; keep the fastest that stays correct."""
    import hone
    from hone.cost.pricing import pricing_from_options

    models = model or [DEFAULT_MODEL]
    stacks = _labels(recipe)
    if list_recipes:
        if len(models) > 1:
            raise InputError("--list-recipes takes one model")
        planned = hone.list_recipes(models[0], device=device, batch_sizes=_batch_sizes(batch_sizes), stacks=stacks or (),
                                    input_shapes=input_shape, trust_pickle=trust_pickle)
        _print_recipes(planned, json_out)
        return
    from hone.store import default_store_path

    store_path = None if no_store else (db or default_store_path())
    log = log_path(store_path)
    options = dict(
        device=device,
        batch_sizes=_batch_sizes(batch_sizes),
        threads=threads,
        accuracy_budget=accuracy_budget,
        calibration=calibration,
        eval=eval_data,
        metric=metric,
        fallback_attempts=fallback_attempts,
        timeout_s=timeout,
        worker_memory=worker_memory,
        time_budget_s=time_budget or None,
        patience=patience,
        measure_time_s=measure_time,
        include=_labels(only),
        recipes=stacks,
        exclude=_labels(skip),
        store=False if no_store else (db or None),
        resume=resume,
        retry_failed=retry_failed,
        explore=explore,
        progress=not (quiet or os.environ.get("HONE_NO_PROGRESS")),
        profile_first=not no_profile,
        input_shapes=input_shape,
        trust_pickle=trust_pickle,
        objective=objective,
        max_p99_ms=max_p99_ms,
        max_memory_mb=max_memory_mb,
        pricing=pricing_from_options(price_table, price_per_hour, instance),  # a bad table fails before any work
        serve_sweep=_serving(serve_sweep, serve_top, serve_time),
    )
    if len(models) > 1:
        from hone.cli._several import optimize_several

        optimize_several(models, options, executor, ray_address, store_path, log, json_out=json_out, quiet=quiet,
                         export=export)
        return
    with third_party_to(log):  # libraries' own output goes to the run's log, not the terminal
        result = hone.optimize(models[0], executor=executor, ray_address=ray_address, **options)
    _show(result, store_path, json_out=json_out, quiet=quiet)
    noted = summary(log)
    if noted and not quiet:
        typer.echo(noted, err=True)
    if export is not None:
        export_winner(result, export, json_out=json_out)


def _show(result, store_path: Path | None, *, json_out: bool, quiet: bool) -> None:
    """The run as JSON, its verdict line or its table; then its HTML report, beside the store."""
    from hone.report.console import render
    from hone.report.json import to_json

    if json_out:
        typer.echo(to_json(result))
    elif quiet:
        typer.echo(verdict_line(result))
    else:
        render(result)
    page = write_report(result, store_path)
    if page is not None and not quiet:
        typer.echo(f"report: {page}", err=True)


def export_winner(result, export: Path, *, json_out: bool) -> None:
    if result.selection.best is None:
        raise InputError("nothing to export: no candidate passed validation")
    where = result.export(export)
    effort = " (best effort: no candidate met every limit)" if result.selection.best_effort else ""
    typer.echo(f"exported {result.selection.best.label}{effort} to {where} (load it with hone.load)", err=json_out)


def write_report(result, store_path: Path | None) -> Path | None:
    """The run's HTML report, in the run's folder beside the store (None without a store: the
    run has no folder; `hone report RUN --html` writes one from any stored run)."""
    if store_path is None or result.run.run_id is None:
        return None
    from hone.report.html import write_html
    from hone.store import Store

    with Store(store_path) as db:
        folder = db.artifacts_dir(result.run.run_id)
    try:
        return write_html(result, folder / "report.html")
    except Exception as exc:  # noqa: BLE001 - the run is stored; a report that fails must not hide it
        typer.echo(f"warning: the HTML report was not written ({type(exc).__name__}: {exc}); "
                   f"`hone report {result.run.run_id} --html FILE` retries", err=True)
        return None


def verdict_line(result) -> str:
    sel = result.selection
    if sel.best is None:
        return f"best: none ({sel.why_best})"
    return f"{'best effort' if sel.best_effort else 'best'}: {sel.why_best}"


def _print_recipes(planned: list, json_out: bool) -> None:
    """One line per recipe: label, steps, cost, and why it cannot run here if it cannot."""
    import json

    if json_out:
        typer.echo(json.dumps([{"label": p.recipe.label, "steps": p.recipe.describe(), "cost": p.recipe.cost,
                                "compute_dtype": p.recipe.compute_dtype, "unavailable": p.unavailable} for p in planned],
                              indent=2))
        return
    width = max(len(p.recipe.label) for p in planned)
    for p in planned:
        where = f"  [not here: {p.unavailable}]" if p.unavailable else ""
        typer.echo(f"{p.recipe.label:<{width}}  {p.recipe.describe()}  (cost {p.recipe.cost:g}){where}")
    # An example from this model's own plan: a torch stack means nothing to an ONNX file.
    example = next((p.recipe.label for p in planned if "+" in p.recipe.label and not p.unavailable), None)
    typer.echo(f"{len(planned)} recipes; name any stack of steps with --recipe" + (f", e.g. {example}" if example else ""))
