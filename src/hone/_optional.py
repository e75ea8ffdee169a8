"""Optional dependencies: checked with find_spec (no import), imported only where used."""

from __future__ import annotations

import importlib
import importlib.util
import re
from importlib import metadata
from types import ModuleType

from hone.errors import MissingDependency

# Distributions whose import name is not their name with "-" as "_" (the extras themselves are
# listed once, in pyproject.toml's [project.optional-dependencies]).
IMPORT_NAMES = {"scikit-learn": "sklearn", "apache-tvm": "tvm", "apache-tvm-ffi": "tvm_ffi", "nvidia-modelopt": "modelopt"}
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)[^;]*;\s*extra\s*==\s*['\"]([^'\"]+)['\"]")


def import_name(distribution: str) -> str:
    """The top-level module a distribution installs ("scikit-learn" -> "sklearn")."""
    name = distribution.split("[")[0].strip().lower()
    return IMPORT_NAMES.get(name, name.replace("-", "_").replace(".", "_"))


def extras_of(requirements: list[str]) -> dict[str, str]:
    """import name -> the extra that brings it, from requirement lines ('onnx; extra == "onnx"');
    meta-extras (hone[...]) and the test extra name no backend."""
    found: dict[str, str] = {}
    for line in requirements:
        match = _REQUIREMENT.match(line)
        if match and match.group(1).lower() != "hone" and match.group(2) != "test":
            found.setdefault(import_name(match.group(1)), match.group(2))
    return found


def _installed_extras() -> dict[str, str]:
    try:
        return extras_of(metadata.requires("hone") or [])
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return {}


EXTRA_OF = _installed_extras()  # import name -> pip extra, for the install hint


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


def installed_version(distribution: str) -> str | None:
    """The installed distribution's version from its metadata (no import), or None."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def release(version: str) -> tuple[int, int] | None:
    """"2.8.0+cpu" -> (2, 8)."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def torch_release_mismatch(distribution: str, torch_version: str | None = None, hint: str | None = None) -> str | None:
    """For a package built against one torch release (IPEX, torch-tensorrt: X.Y pairs with torch
    X.Y): why the installed one cannot run with this torch, or None (also when it is not
    installed: `requires` says that)."""
    version = installed_version(distribution)
    torch_version = torch_version or installed_version("torch") or "unknown"
    if version is None or release(version) == release(torch_version):
        return None
    built_for = ".".join(map(str, release(version) or ()))
    wanted = ".".join(map(str, release(torch_version) or ()))
    hint = hint or f"pip install '{distribution}=={wanted}.*' (the release built for torch {wanted})"
    return (f"{distribution} {version} is installed but built for torch {built_for}; "
            f"this environment has torch {torch_version}. {hint}")
