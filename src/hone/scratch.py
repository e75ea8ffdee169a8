"""hone's scratch folders in the temporary directory: named with the pid of the process that
owns them, so a folder whose owner died without removing it (kill -9, the OOM killer, a power
cut) can be told from one in use and removed by the next run, as hone.atomic does for partial
artifacts. A live owner removes its own (TemporaryDirectory, weakref.finalize)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from hone._pids import alive

KINDS = ("run", "load", "artifacts")
# Old enough that no owner in another pid namespace sharing this folder could still be writing
# it unseen: a live sweep touches its folder at every candidate.
ORPHAN_AGE_S = 3600.0
_NAME = re.compile(rf"^hone-({'|'.join(KINDS)})-(\d+)-")


def prefix(kind: str) -> str:
    """The name prefix of a new scratch folder of `kind` owned by this process."""
    assert kind in KINDS, kind
    return f"hone-{kind}-{os.getpid()}-"


def remove_orphaned_scratch(folder: str | os.PathLike[str] | None = None, min_age_s: float = ORPHAN_AGE_S) -> int:
    """Remove the scratch folders in `folder` (the temporary directory) whose owner is dead and
    that nobody touched for `min_age_s`; how many were removed. Never raises: a folder another
    user owns, or one removed meanwhile, is left to them."""
    root = Path(folder or tempfile.gettempdir())
    removed = 0
    try:
        entries = list(os.scandir(root))
    except OSError:
        return 0
    now = time.time()
    for entry in entries:
        match = _NAME.match(entry.name)
        if match is None or alive(int(match.group(2))):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or now - entry.stat(follow_symlinks=False).st_mtime < min_age_s:
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed += not os.path.exists(entry.path)
    return removed
