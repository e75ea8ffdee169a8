"""Which unit ran each op on CPU: the same forward in a child with oneDNN/MKL verbose on.

Verbose mode is read once when the libraries initialise, so it needs its own process; the
child gets the module the way a sweep worker does (pickled by this process, user files
imported first). Failure to learn the units costs a note, never the profile.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

import torch

from hone.models.workload import Workload
from hone.profiler.kernels import primitive_units, run_with_cpu_verbose, unit_for_op
from hone.profiler.records import OpStat

_CHILD = """
import sys, torch
sys.path[:0] = {sys_path!r}
torch.set_num_threads({threads})
user_files = {user_files!r}
if user_files:
    from hone.models.factory import import_user_files
    import_user_files(user_files)
bundle = torch.load({path!r}, weights_only=False)
module = bundle["module"].eval()
with torch.inference_mode():
    for _ in range(2):  # the first call creates primitives, the second executes cached ones
        module(**bundle["inputs"])
"""


def cpu_units(workload: Workload, input_set: str, threads: int) -> tuple[dict[str, str], str | None]:
    """(oneDNN/MKL primitive kind -> unit, None) or ({}, why not)."""
    with tempfile.TemporaryDirectory(prefix="hone-units-") as tmp:
        path = Path(tmp) / "forward.pt"
        try:
            torch.save({"module": workload.module, "inputs": workload.input_set(input_set).tensors}, path)
        except Exception as exc:  # an unpicklable module: no units, the rest of the profile stands
            return {}, f"kernel units unknown: the model cannot be sent to a child process ({type(exc).__name__})"
        code = _CHILD.format(
            sys_path=[p for p in sys.path if p], threads=threads, user_files=workload.user_files, path=str(path)
        )
        lines = run_with_cpu_verbose(code)
    units = primitive_units(lines)
    return units, None if units else "kernel units unknown: oneDNN/MKL printed nothing for this model"


def with_units(ops: list[OpStat], units: dict[str, str]) -> list[OpStat]:
    return [dataclasses.replace(op, unit=unit_for_op(op.name, units) or op.unit) for op in ops]
