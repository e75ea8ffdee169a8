"""The machine-readable report: one JSON document per run, strict JSON (no NaN/Infinity, which
most parsers reject), versioned by its "schema" key."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from hone.atomic import write_atomic
from hone.search.run import OptimizeResult

SCHEMA = "hone.run/1"


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def to_dict(result: OptimizeResult) -> dict[str, Any]:
    from hone.report._cost_section import json_block

    return _json_safe({"schema": SCHEMA, **result.to_dict(), **json_block(result)})


def to_json(result: OptimizeResult) -> str:
    # default=str: free-form runner_info may hold a dtype or a Path; text beats failing the report.
    return json.dumps(to_dict(result), indent=2, allow_nan=False, default=str)


def write_json(result: OptimizeResult, path: str | os.PathLike[str]) -> Path:
    """Write atomically (temp file + rename): a reader never sees half a report."""
    return write_atomic(path, to_json(result) + "\n")
