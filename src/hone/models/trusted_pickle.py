"""A full pickle (.pt, .pth, .bin, .pkl) under --trust-pickle, never unpickled in this process.

Unpickling runs whatever code the file names, so even with the user's opt-in it happens only in
a throwaway child process (`python -m hone.models._pickle_child`): the child loads the file
(torch.load, weights_only=False), finds the nn.Module (the object itself, or a dict holding it
under "model" or "module"), and converts it to a form this process loads without unpickling:
torch.export to a temporary .pt2 (dim 0 one dynamic batch where the model allows), which
hone.models.pt2_file then loads with its weights-only guard. A child that misbehaves can only
hand back a .pt2 that fails that guard.

A pickled module carries no input shapes, so --input-shape is required, one per forward input
(named as in forward's signature). Inputs are float32, except int64 for names ending in "ids"
or holding "mask" (token ids, attention masks); anything else needs a .pt2 or a file.py:factory.

The run records the opt-in: provenance["trust_pickle"] = True and the file's sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from hone.errors import InputError, MissingDependency
from hone.models.options import LoadOptions
from hone.models.workload import Workload

# Unpickling a large model and exporting it can take minutes; a child stuck past this is killed.
CHILD_TIMEOUT_S = 1800
_TEXT_LIMIT = 500  # the child may be anything the pickle made it: cap what we repeat of it


def load_trusted_pickle(path_text: str, options: LoadOptions) -> Workload:
    from hone.models.pt2_file import workload_from_program

    path = Path(path_text).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()  # reading bytes is not unpickling
    with tempfile.TemporaryDirectory(prefix="hone-pickle-") as scratch:
        program = Path(scratch) / "program.pt2"
        facts = run_child("module", {"path": str(path.resolve()), "out": str(program),
                                     "input_shapes": {n: list(s) for n, s in options.input_shapes.items()}},
                          Path(scratch), path.name)
        if not program.is_file():
            raise InputError(f"{path.name}: the child process wrote no program")
        workload = workload_from_program(program.read_bytes(), options, path.name)
    workload.provenance.update(
        format="pickle", trust_pickle=True, sha256=sha256,
        converted="unpickled (torch.load, weights_only=False) in a child process, then torch.export to .pt2",
        pickled_class=_text(facts.get("class")), module_key=_text(facts.get("key")) or None,
        inputs=f"made from --input-shape ({_text(facts.get('dtypes'))})",
    )
    if facts.get("static_batch_reason"):
        workload.provenance["static_batch_reason"] = _text(facts["static_batch_reason"])
    workload.description = f"{_text(facts.get('class'))} from the pickle {path.name} (--trust-pickle), as a torch.export program"
    return workload


def convert_hf_weights(folder: Path, out: Path) -> Path:
    """A transformers folder's pytorch_model*.bin re-saved as safetensors in `out`, by a child."""
    run_child("hf_weights", {"path": str(folder), "out": str(out)}, out, folder.name)
    if not any(out.glob("*.safetensors")):
        raise InputError(f"{folder.name}: the child process wrote no safetensors weights")
    return out


def run_child(task: str, request: dict[str, Any], scratch: Path, name: str) -> dict[str, Any]:
    """Run one conversion in `python -m hone.models._pickle_child`; its result as a dict, or its
    error raised here as the HoneError it reported."""
    request_path, result_path = scratch / "request.json", scratch / "result.json"
    request_path.write_text(json.dumps({**request, "task": task, "result": str(result_path), "sys_path": sys.path}))
    # Its output goes to a file, not a pipe (a process the unpickled code forks would hold a pipe
    # open, and reading to its end would wait for that process), and it runs in a session of
    # its own, so whatever it started ends with it.
    log_path = scratch / "child.log"
    with open(log_path, "wb") as log:
        child = subprocess.Popen([sys.executable, "-m", "hone.models._pickle_child", str(request_path)],
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        returncode = child.wait(timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InputError(f"{name}: unpickling and converting did not finish in {CHILD_TIMEOUT_S} s") from None
    finally:
        _kill_session(child)
    try:
        result = json.loads(result_path.read_text())
    except (OSError, ValueError):
        lines = log_path.read_text(errors="replace").strip().splitlines()
        tail = _text(lines[-1] if lines else f"exit code {returncode}")
        raise InputError(f"{name}: the child process that unpickles it died without a result: {tail}") from None
    if not isinstance(result, dict):
        raise InputError(f"{name}: the child process returned {type(result).__name__}, not a result")
    if result.get("ok"):
        return result
    message, hint = _text(result.get("message")), _text(result.get("hint")) or None
    if result.get("kind") == "MissingDependency":
        raise MissingDependency(_text(result.get("package")) or "a package", cause=message)
    raise InputError(f"{name}: {message}", hint=hint)


def _kill_session(child: subprocess.Popen) -> None:
    """End the child and everything the unpickled code started in its session (no grace: it is
    the user's code, run only to convert)."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    child.wait()


def _text(value: Any) -> str:
    return "" if value is None else str(value)[:_TEXT_LIMIT]
