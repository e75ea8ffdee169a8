"""One timing slot per machine: work whose time is measured (a candidate's worker, the parent's
eager reference and profile, a serving load test) runs only while it holds the slot, so two
timings never share the cores (a candidate timed beside another is measured against noise).

The slot is an exclusive `flock` on a lock file in a per-machine place
(`<tempdir>/hone-timing-<uid>.lock`; HONE_TIMING_LOCK overrides it). Every hone process on
the machine takes the same file: two `hone optimize` runs, the driver of a Ray sweep and the Ray
tasks on its own node. The kernel drops the lock when its holder dies however it dies (a killed
Ray worker, `kill -9`), so a crash never leaves the slot taken. The holder writes its pid and
what it is doing into the file; a process that has to wait says once who holds it.

Re-entrant within one thread (a serving sweep inside a run that already holds the slot);
separate threads of one process exclude each other like separate processes (each opens its own
file description, and flock locks conflict between descriptions).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; timings are then not kept apart
    fcntl = None  # type: ignore[assignment]

LOCK_ENV = "HONE_TIMING_LOCK"

HOLDER_READ_TRIES = 20  # a holder that just took the slot writes its line a moment later
HOLDER_READ_PAUSE_S = 0.01

_log = logging.getLogger(__name__)
_held = threading.local()  # this thread's slots: lock path -> depth
_this_process: dict[str, str] = {}  # lock path -> what, while a thread of this process holds it


def lock_path() -> Path:
    """This machine's lock file (per user: another user's file in the shared temp folder could
    not be opened for writing under the kernel's protected_regular rule)."""
    env = os.environ.get(LOCK_ENV)
    if env:
        return Path(env)
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"hone-timing-{uid}.lock"


def holder(path: str | os.PathLike[str] | None = None) -> str:
    """Who holds (or last held) the slot, as its holder wrote it: "pid N: what"."""
    lock = Path(path or lock_path())
    for _ in range(HOLDER_READ_TRIES):
        try:
            text = lock.read_text().strip()
        except OSError:
            text = ""
        if text:
            return text
        time.sleep(HOLDER_READ_PAUSE_S)
    return "unknown"


@contextlib.contextmanager
def timing_slot(what: str, path: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """Hold this machine's timing slot for the block; wait for it if another holds it.
    `what`: what the holder is doing, written for whoever waits. `path`: the lock file
    (default `lock_path()`)."""
    lock = Path(path) if path is not None else lock_path()
    depths: dict[str, int] = _held.__dict__.setdefault("depths", {})
    key = str(lock.resolve())
    if fcntl is None or depths.get(key):
        depths[key] = depths.get(key, 0) + 1
        try:
            yield
        finally:
            depths[key] -= 1
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Another thread of this process (models side by side) is expected; another process is news.
            sibling = _this_process.get(key)
            _log.log(logging.DEBUG if sibling else logging.WARNING,
                     "waiting for this machine's timing slot (%s): held by %s",
                     what, f"pid {os.getpid()}: {sibling}" if sibling else holder(lock))
            fcntl.flock(fd, fcntl.LOCK_EX)
        _this_process[key] = what
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {what}\n".encode(), 0)
        depths[key] = 1
        try:
            yield
        finally:
            depths[key] = 0
            _this_process.pop(key, None)
            # Unlock explicitly, not only by closing: a process forked meanwhile (without exec)
            # shares this file description and would otherwise keep the slot while it lives.
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
