"""The one way hone's loaders reach transformers: offline, and without its progress bars."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from types import ModuleType

from hone._optional import require


def import_transformers() -> ModuleType:
    # Offline by construction: loaders read local folders or build from configs; this only
    # stops any hub lookup a transformers code path might try.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return require("transformers", "models")


@contextlib.contextmanager
def quiet(transformers: ModuleType) -> Iterator[None]:
    """No "Loading weights" bar on stderr during a load; the caller's setting comes back after."""
    logging = transformers.utils.logging
    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()
