"""`hone optimize a b c`: several models through search.many, each shown as one model is (its
table or JSON, its HTML report, its export in a subfolder), then one closing line per model.

While the models run, a line says when each starts and ends: several progress bars at once (side
by side under Ray) would garble the terminal. Those lines go to a copy of the terminal's stderr
taken before libraries' output is sent to the run's log (cli._quiet)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import typer

from hone.cli._quiet import summary, third_party_to
from hone.cli.optimize import export_winner, verdict_line, write_report
from hone.errors import HoneError
from hone.search.many import ModelRun, optimize_many


def optimize_several(models: list[str], options: dict, executor: str | None, ray_address: str | None,
                     store_path: Path | None, log: Path, *, json_out: bool, quiet: bool, export: Path | None) -> None:
    from hone.report.console import render
    from hone.search.execute import safe_name

    with _terminal() as terminal:
        def started(model: str) -> None:
            if not quiet:
                print(f"{model}: started", file=terminal, flush=True)

        def done(run: ModelRun) -> None:
            if not quiet:
                ended = "failed" if run.error else "done"
                print(f"{run.model}: {ended} after {run.wall_s:.0f} s", file=terminal, flush=True)

        runs = optimize_many(models, executor=executor, ray_address=ray_address, around=lambda: third_party_to(log),
                             on_start=started, on_done=done, **options)
    if json_out:
        typer.echo("[" + ",\n".join(_json(run) for run in runs) + "]")
    failed = [run.error for run in runs if run.error is not None]
    for run in runs:
        if run.error is not None:
            continue  # said in its closing line
        if not (json_out or quiet):
            typer.echo(f"\n== {run.model} ==")
            render(run.result)
        page = write_report(run.result, store_path)
        if page is not None and not quiet:
            typer.echo(f"report: {page}", err=True)
        if export is not None:
            try:
                export_winner(run.result, export / safe_name(run.model), json_out=json_out)
            except HoneError as exc:  # this model has nothing to export; the others may
                typer.echo(f"error: {run.model}: {exc}", err=True)
                failed.append(exc)
    noted = summary(log)
    if noted and not quiet:
        typer.echo(noted, err=True)
    for run in runs:  # the closing summary: one line per model
        typer.echo(_closing_line(run), err=json_out)
    if failed:
        raise typer.Exit(max(getattr(e, "exit_code", 1) for e in failed))


def _closing_line(run: ModelRun) -> str:
    if run.error is not None:
        what = str(run.error) if isinstance(run.error, HoneError) else f"unexpected {type(run.error).__name__}: {run.error}"
        return f"{run.model}: error: {what}"
    result = run.result
    where = f"run {result.run.run_id}, " if result.run.run_id is not None else ""
    return f"{run.model}: {verdict_line(result)} ({where}{run.wall_s:.0f} s)"


def _json(run: ModelRun) -> str:
    from hone.report.json import to_json

    if run.error is not None:
        return json.dumps({"model": run.model, "error": str(run.error)})
    return to_json(run.result)


@contextlib.contextmanager
def _terminal():
    """A copy of stderr as it is now (the terminal), kept while the runs redirect fd 2."""
    stream = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    try:
        yield stream
    finally:
        stream.close()
