"""`hone compare RUN_A RUN_B`: two stored runs (one store, or one each) side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from hone.cli.app import app


def _load(db: Path | None, run_id: int):
    from hone.errors import InputError
    from hone.store import Store, default_store_path

    path = db if db is not None else default_store_path()
    if not path.exists():  # opening would create an empty store and hide the typo
        raise InputError(f"no run store at {path}", hint="give the store with --db (and --db-b for run B's)")
    with Store(path) as store:
        return store.load_run(run_id, resolve=False)  # comparing needs no plugin


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _render(found: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from hone.report.console import TEXT_WIDTH, fmt_time

    console = Console()
    if not console.is_terminal:  # piped or logged: rich would assume 80 columns and squeeze the figures
        console = Console(width=TEXT_WIDTH)
    for side in ("a", "b"):
        s = found[side]
        console.print(Text(f"{side.upper()}: run {s['run_id']} of {s['model']}, {s['created_at']}, {s['cpu_name']} "
                           f"({s['fingerprint']}), {s['threads']} threads on {s['device']}; best {s['best'] or '-'}"))
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    longest = max((len(row["label"]) for row in found["recipes"]), default=6)
    for name in ("inputs", "recipe", "status", "p50 A", "p50 B", "B/A", "speedup A", "speedup B"):
        text = name in ("inputs", "recipe", "status")
        table.add_column(name, justify="left" if text else "right", no_wrap=not text, overflow="fold",
                         min_width=min(longest, 30) if name == "recipe" else None)
    for row in found["recipes"]:
        a, b = row["a"], row["b"]
        status = Text(f"{a['status']} -> {b['status']}", "bold yellow") if row["status_changed"] else Text(a["status"])
        label = row["label"] + (" (config differs)" if row["config_differs"] else "")
        table.add_row(Text(row["input_set"]), Text(label), status, fmt_time(a["p50_s"]), fmt_time(b["p50_s"]),
                      _ratio(row["p50_ratio_b_over_a"]), _ratio(a["speedup"]), _ratio(b["speedup"]))
    console.print(table)
    lines = [f"status changed: {change}" for change in found["status_changes"]]
    for side in ("a", "b"):
        for r in found[f"only_in_{side}"]:
            lines.append(f"only in {side.upper()}: {r['label']} at {r['input_set']} ({r['status']})")
    hw = found["hardware"]
    if not hw["same_fingerprint"]:
        lines.append(f"machines differ: fingerprint {hw['fingerprint'][0]} vs {hw['fingerprint'][1]}")
    for fact, (x, y) in hw["facts"].items():
        lines.append(f"  {fact}: {x} vs {y}")
    for side in ("a", "b"):
        if hw[f"flags_only_in_{side}"]:
            lines.append(f"  CPU flags only in {side.upper()}: {' '.join(hw[f'flags_only_in_{side}'])}")
    for what in ("versions", "settings"):
        for name, (x, y) in found[what].items():
            lines.append(f"{what[:-1]} {name}: {x or 'absent'} vs {y or 'absent'}")
    if hw["same_fingerprint"] and not found["versions"]:
        lines.append("same machine and library versions")
    for line in lines:
        console.print(Text(line))


@app.command()
def compare(
    run_a: int = typer.Argument(..., metavar="RUN_A", help="run id of A"),
    run_b: int = typer.Argument(..., metavar="RUN_B", help="run id of B"),
    db: Optional[Path] = typer.Option(
        None, "--db", envvar="HONE_DB", help="store of run A (and of B without --db-b; default ./hone-runs/hone.db)",
        show_default=False,
    ),
    db_b: Optional[Path] = typer.Option(None, "--db-b", help="store of run B, when it is another store"),
    as_json: bool = typer.Option(False, "--json", help="print the comparison as JSON"),
) -> None:
    """Compare two stored runs: recipes side by side, status changes, machines and library versions."""
    from hone.report.compare import compare_runs

    found = compare_runs(_load(db, run_a), _load(db_b if db_b is not None else db, run_b))
    if as_json:
        typer.echo(json.dumps(found, indent=2, default=str))
    else:
        _render(found)
