"""A memory limit per worker: the resident memory of the worker and everything it started, read
from /proc while it runs, its process group killed once it passes the limit.

Why not RLIMIT_AS: it caps address space, not memory. CUDA reserves terabytes of it at start
and allocators reserve arenas they never touch, so any cap low enough to matter breaks
candidates that would have fit. Why not a cgroup: creating one needs a delegated cgroup tree,
which containers and CI runners rarely give. Reading RSS can overshoot between two reads (an
allocation faster than the poll); the limit is a fraction below the machine's memory so the
kernel's own out-of-memory killer stays the last resort, not the first.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from hone.errors import InputError

DEFAULT_FRACTION = 0.8  # of the machine's memory, per worker
POLL_S = 0.2
CHILDREN_EVERY = 5  # polls between scans for the worker's own children (compile workers)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_memory_limit(text: str | float | int | None) -> float | None:
    """`--worker-memory`: a fraction of the machine's memory (0 < f <= 1), a size ("6GiB",
    "512M"), or "off"/None for no limit. Returns the fraction or the bytes (> 1); InputError
    for anything else."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        value = float(text)
    elif text.strip().lower() in ("off", "none", "0"):
        return None
    else:
        match = _SIZE.match(text)
        if not match:
            raise _bad(f"{text!r} is neither a fraction of the machine's memory nor a size")
        number, unit = float(match.group(1)), match.group(2).lower()
        value = number if not unit and number <= 1 else number * _UNITS[unit]
    if value <= 0:
        raise _bad(f"a limit must be positive, not {text!r}")
    return value


def _bad(what: str) -> InputError:
    return InputError(f"worker memory: {what}", hint="e.g. 0.8 (of this machine's memory), 6GiB, or off")


def limit_bytes(spec: float | None) -> int | None:
    """Bytes from a parse_memory_limit result, a fraction taken of this machine's memory (a Ray
    node resolves it against its own)."""
    if spec is None:
        return None
    if spec <= 1:
        return int(spec * total_memory_bytes())
    return int(spec)


def total_memory_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


@dataclass
class MemoryWatch:
    """Polled by the parent while a worker runs: `over()` is the resident bytes of the worker's
    processes once they pass `limit`, else None."""

    pid: int
    limit: int
    _polls: int = 0
    _children: tuple[int, ...] = ()

    def over(self) -> int | None:
        self._polls += 1
        if self._polls % CHILDREN_EVERY == 1:
            self._children = tuple(_descendants(self.pid))
        used = _rss(self.pid) + sum(_rss(child) for child in self._children)
        return used if used > self.limit else None

    def reason(self, used: int) -> str:
        return (f"its processes used {used / 2**30:.2f} GiB, over the worker memory limit of {self.limit / 2**30:.2f} GiB; "
                "killed (--worker-memory raises or lifts the limit)")


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):  # gone, or not Linux
        return 0


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []
