"""Progress of a sweep on stderr: what runs now, candidates done of planned, elapsed time and
the time left as the plan's cost estimates put it, and a line per finished candidate.

The stream is the terminal's stderr, which the CLI may have set apart (set_stream) while it
sends third-party output written to file descriptor 2 to the run's log file.
"""

from __future__ import annotations

import sys
from typing import TextIO

from hone.report.console import STATUS_STYLE, fmt_time
from hone.search.result import CandidateResult


_STREAM: TextIO | None = None  # None: sys.stderr at the time the display starts


def set_stream(stream: TextIO | None) -> None:
    """Where progress is drawn (None: sys.stderr)."""
    global _STREAM
    _STREAM = stream


def _eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "ETA -"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"ETA ~{minutes}:{secs:02d}" if minutes else f"ETA ~{secs} s"


class SweepProgress:
    def __init__(self, total: int | None = None, *, enabled: bool = True):
        self.total = total
        self.enabled = enabled
        self._progress = None
        self._task = None

    def __enter__(self) -> "SweepProgress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            console = Console(file=_STREAM or sys.stderr)
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                # From the plan's cost estimates (search.strategy.eta_s), not from the rate so
                # far: candidates differ in cost by orders of magnitude.
                TextColumn("{task.fields[eta]}"),
                console=console,
                transient=True,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("starting", total=self.total, eta=_eta_text(None))
        return self

    def __exit__(self, *exc) -> bool:
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False

    def stage(self, message: str) -> None:
        """What the parent is doing before the sweep (load, probe, reference)."""
        if self._progress is not None:
            self._progress.update(self._task, description=message)

    def set_total(self, total: int) -> None:
        self.total = total
        if self._progress is not None:
            self._progress.update(self._task, total=total)

    def add_total(self, count: int) -> None:
        """More candidates than planned (accuracy fallback retries)."""
        self.set_total((self.total or 0) + count)

    def set_eta(self, seconds: float | None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, eta=_eta_text(seconds))

    def start(self, label: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=f"running {label}")

    def finished(self, result: CandidateResult, resumed: bool) -> None:
        if self._progress is None:
            return
        m = result.measurement
        timing = f" p50 {fmt_time(m.p50)}" if m else ""
        where = " (resumed)" if resumed else f" in {result.wall_s:.1f} s"
        style = STATUS_STYLE.get(result.status, "")
        reason = "" if result.ok else f": {result.reason[:120]}"
        self._progress.console.print(
            f"[{style}]{result.status.value:>12}[/] {result.recipe.label} @ {result.input_set}{timing}{where}{reason}",
            highlight=False,
        )
        self._progress.advance(self._task)
