"""Keep the terminal for hone's own lines: what libraries write to the process's stdout and
stderr while a run works goes to the run's log file instead.

Much of that noise is written by C++ straight to file descriptors 1 and 2 (kineto's
`USDT: profiler_start`, ONNX Runtime and OpenVINO plugin messages), out of reach of Python's
`warnings` filters and loggers, so the descriptors themselves are pointed at the log. The
progress display keeps a duplicate of the terminal's stderr (report.progress.set_stream), and
hone's own log records (the `hone` logger, warnings and up) are sent there too. Everything is
restored on the way out, before the report is printed or an error is shown.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def log_path(store_path: Path | None, command: str = "optimize") -> Path:
    """`<store folder>/logs/hone-<command>-<UTC time>-<pid>.log`; without a store, the temp folder."""
    folder = store_path.parent / "logs" if store_path is not None else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"hone-{command}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{os.getpid()}.log"


@contextlib.contextmanager
def third_party_to(path: Path) -> Iterator[None]:
    from hone.report import progress

    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    terminal = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    own = logging.StreamHandler(terminal)
    own.setLevel(logging.WARNING)
    own.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    hone_logger = logging.getLogger("hone")
    with open(path, "ab") as log:
        try:
            for fd in (1, 2):
                os.dup2(log.fileno(), fd)
            progress.set_stream(terminal)
            hone_logger.addHandler(own)
            hone_logger.propagate = False  # not also into the log through the root logger
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            progress.set_stream(None)
            hone_logger.removeHandler(own)
            hone_logger.propagate = True
            terminal.close()


def summary(path: Path) -> str | None:
    """One line pointing at the log, or None (and the file removed) when nothing was written."""
    try:
        size = path.stat().st_size
    except OSError:
        return None
    if size == 0:
        path.unlink(missing_ok=True)
        return None
    lines = sum(1 for _ in path.open("rb"))
    return f"third-party output ({lines} lines) is in {path}"
