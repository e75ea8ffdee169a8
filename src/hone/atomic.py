"""Writes a reader (or a kill) never sees half of: a temporary file or folder beside the target,
flushed to disk, then renamed into place (`os.replace`, atomic on one filesystem).

A process killed mid-write leaves the old target (or none) and a hidden partial beside it;
`atomic_directory` removes partials whose writer is gone the next time it writes there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hone._pids import alive

PARTIAL = ".partial-"  # in the names of folders being written: .<target>.partial-<pid>-<random>


def write_atomic(path: str | os.PathLike[str], data: str | bytes, *, durable: bool = False,
                 mode: int | None = None) -> Path:
    """Write `data` to `path` through a temporary file in the same folder. `durable`: fsync the
    file and its folder, so the write survives a power cut, not only a kill. `mode`: the file's
    permissions (mkstemp's 0600 otherwise)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_directory(path.parent)
    return path


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a hidden folder beside `target` to fill; on success it is flushed to disk and
    renamed to `target` (which must not exist or be empty: rename(2) replaces only an empty
    folder), on failure removed. A kill in between leaves `target` as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_partials(target.parent)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}{PARTIAL}{os.getpid()}-", dir=target.parent))
    try:
        yield partial
        fsync_tree(partial)
        os.replace(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    fsync_directory(target.parent)


def remove_orphaned_partials(folder: Path) -> None:
    """Remove the partial folders in `folder` whose writing process is gone (killed mid-write)."""
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            pid = _writer_pid(entry.name)
            if pid is not None and entry.is_dir() and not alive(pid):
                shutil.rmtree(entry, ignore_errors=True)


def fsync_tree(root: Path) -> None:
    """Flush every file under `root` and every folder's entries to disk."""
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_directory(Path(folder))


def fsync_directory(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


def _writer_pid(name: str) -> int | None:
    if not name.startswith(".") or PARTIAL not in name:
        return None
    pid, _, _ = name.rpartition(PARTIAL)[2].partition("-")
    return int(pid) if pid.isdigit() else None

