"""hone: make a PyTorch model fast for inference on this machine, and prove it stayed correct.

    import hone
    result = hone.optimize("minilm")                 # or hone.optimize(model, example_inputs)
    print(result.table())

Importing hone imports no backend and does not touch CUDA: the names below resolve on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["optimize", "list_recipes", "profile", "load", "load_model", "probe_hardware", "HoneError", "InputError"]

if TYPE_CHECKING:
    from hone.api import list_recipes, load_model, optimize, probe_hardware, profile
    from hone.export import load
    from hone.errors import HoneError, InputError

_LAZY = {
    "optimize": "hone.api",
    "list_recipes": "hone.api",
    "profile": "hone.api",
    "load": "hone.export",
    "load_model": "hone.api",
    "probe_hardware": "hone.api",
    "HoneError": "hone.errors",
    "InputError": "hone.errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hone' has no attribute {name!r}")
