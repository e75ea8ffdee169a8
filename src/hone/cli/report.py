"""`hone report [RUN_ID]`: re-render a stored run (latest by default) without running anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from hone.cli.app import app


def _open_store(db: Path | None):  # -> hone.store.Store; imported here to keep `hone --help` cheap
    from hone.errors import InputError
    from hone.store import Store, default_store_path

    path = db if db is not None else default_store_path()
    if not path.exists():  # opening would create an empty store and hide the typo
        raise InputError(f"no run store at {path}; run `hone optimize` first")
    return Store(path)


def _print_list(runs: list[dict], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(runs, indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if not runs:
        Console().print("the run store holds no runs")
        return
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    for name in ("id", "created", "model", "status", "candidates", "best"):
        table.add_column(name, justify="right" if name in ("id", "candidates") else "left")
    for run in runs:
        style = {"finished": "green", "interrupted": "yellow"}.get(run["status"], "")
        table.add_row(
            str(run["id"]), Text(run["created_at"]), Text(run["model"]), Text(run["status"], style),
            str(run["candidates"]), Text(run["best"] or "-"),
        )  # fmt: skip
    Console().print(table)


@app.command()
def report(
    run_id: Optional[int] = typer.Argument(None, metavar="RUN_ID", help="Run to show (default: the latest)."),
    db: Optional[Path] = typer.Option(
        None, "--db", envvar="HONE_DB", help="Run store (default ./hone-runs/hone.db).", show_default=False
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run as JSON (schema hone.run/1)."),
    list_runs: bool = typer.Option(False, "--list", help="List the stored runs, newest first."),
    html: Optional[Path] = typer.Option(
        None, "--html", help="Write the run as one self-contained HTML page (tables and plots, opens offline).",
        dir_okay=False, show_default=False,
    ),
) -> None:
    """Re-render a stored run: the table, the winner and why each other candidate lost."""
    with _open_store(db) as store:
        if list_runs:
            _print_list(store.list_runs(), as_json)
            return
        result = store.load_run(run_id, resolve=False)  # a report needs no plugin
        status = store.run_status(result.run.run_id)  # type: ignore[arg-type]
    if html is not None:
        from hone.report.html import write_html

        written = write_html(result, html, status=status)
        # On stderr beside --json, whose stdout must stay one JSON document.
        typer.echo(f"wrote the HTML report of run {result.run.run_id} to {written}", err=as_json)
        if not as_json:
            return
    if as_json:
        from hone.report.json import to_json

        typer.echo(to_json(result))
        return
    from rich.console import Console

    from hone.report.console import render

    console = Console()
    render(result, console)
    if status != "finished":
        # Say it, since a partial run's "best" is only the best of what ran.
        console.print(
            f"run {result.run.run_id} is {status}: {len(result.results)} result(s) recorded; "
            "`hone optimize` with the same settings resumes it",
            style="yellow",
            markup=False,
        )
