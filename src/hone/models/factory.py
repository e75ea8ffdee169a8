"""`path/to/file.py:factory`: a Python file the user names, whose function builds the model.

The function takes no arguments and returns `(model, example_inputs)` or
`(model, example_inputs, eval_set)`: `model` an nn.Module, `example_inputs` a Tensor, a tuple
of Tensors or a dict name -> Tensor (one batch), `eval_set` an optional hone EvalSet. To bring
calibration or train data too, it returns a `FactoryResult` (below) or a dict with the same
keys: {"model", "example_inputs", "eval", "calibration", "train"}, the first two required;
`calibration` takes the form of `example_inputs` with samples on dim 0 (never the eval split),
`train` a hone TrainSet.

This runs user code on purpose: the user named the file, which our safe-loading rule allows
(unlike a pickle, whose code nobody chose to run). The file is imported under a module name
unique to its absolute path and kept in sys.modules, so its classes pickle by reference and a
worker process re-imports the same file under the same name (`import_user_files`) before
unpickling. The file's folder is not added to sys.path: sibling imports must be importable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from hone.errors import InputError
from hone.models._user_code import user_code
from hone.models.workload import EvalSet, InputSet, TrainSet, Workload, name_inputs

FACTORY_HINT = "expected path/to/file.py:function, where function() returns (model, example_inputs)"


@dataclasses.dataclass
class FactoryResult:
    """What a factory may return instead of a tuple, when it brings more than an eval set."""

    model: torch.nn.Module
    example_inputs: Any  # a Tensor, a tuple of Tensors or a dict name -> Tensor: one batch
    eval: EvalSet | None = None
    calibration: Any = None  # like example_inputs, samples stacked on dim 0; never the eval split
    train: TrainSet | None = None  # for quantization-aware training


def module_name_for(path: Path) -> str:
    """Stable per absolute path, so parent and worker agree without passing anything else."""
    resolved = path.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
    stem = re.sub(r"\W", "_", resolved.stem)
    return f"hone_user_{stem}_{digest}"


def parse_factory_spec(spec: str) -> tuple[Path, str]:
    # rpartition: the path itself may contain ':' (C:\...), the function name never does
    path_part, sep, function = spec.rpartition(":")
    if not sep or not path_part.endswith(".py"):
        if spec.endswith(".py"):
            raise InputError(f"{spec}: no :function part naming the factory", hint=FACTORY_HINT)
        raise InputError(f"{path_part if sep else spec}: not a .py file", hint=FACTORY_HINT)
    if not function.isidentifier():
        raise InputError(f"{spec}: {function!r} is not a function name", hint=FACTORY_HINT)
    path = Path(path_part).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: no such file", hint=FACTORY_HINT)
    return path.resolve(), function


def _import_file(name: str, path: Path) -> ModuleType:
    source_hash = hashlib.sha256(path.read_bytes()).hexdigest()
    cached = sys.modules.get(name)
    # Reuse an unchanged file: re-executing it would make new classes, and objects built from
    # the old ones would no longer pickle by reference.
    if cached is not None and getattr(cached, "__hone_source_sha__", None) == source_hash:
        return cached
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    module.__hone_source_sha__ = source_hash
    sys.modules[name] = module  # before exec: dataclasses and pickle look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # SystemExit too: a script-style file must not end hone
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise InputError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def import_user_files(user_files: dict[str, str]) -> None:
    """In a worker: import each {module name: absolute path} so pickled user classes resolve."""
    for name, path in user_files.items():
        if name in sys.modules:
            continue
        file = Path(path)
        if not file.is_file():
            raise InputError(f"{file}: model source file no longer exists")
        _import_file(name, file)


def load_factory(spec: str, batch_sizes: tuple[int, ...] | None = None, timeout_s: float | None = None) -> Workload:
    """The workload `path/file.py:function` builds. The function runs contained (models._user_code):
    a fork, sys.exit, a hang past `timeout_s` or a flood of output cannot take hone down."""
    path, function = parse_factory_spec(spec)
    if batch_sizes is not None:
        raise InputError(
            f"batch sizes do not apply to {path.name}:{function}",
            hint="the factory's example inputs fix the batch size; return inputs of the size you want",
        )
    where = f"factory {function} in {path}"
    module_name = module_name_for(path)
    with user_code(f"importing {path.name}", timeout_s):
        module = _import_file(module_name, path)
    factory = getattr(module, function, None)
    if not callable(factory):
        defined = sorted(k for k, v in vars(module).items() if callable(v) and getattr(v, "__module__", None) == module_name)
        raise InputError(f"{path} has no function {function!r}", hint=f"defined there: {', '.join(defined) or 'none'}")
    try:
        with user_code(where, timeout_s):
            result = factory()
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{where} raised {type(exc).__name__}: {exc}") from exc
    made = _unpack(result, where)
    # Every loader hands back a CPU module in eval mode: the worker moves it to the target.
    model = made.model.to("cpu").eval()
    try:
        named = {k: v.cpu() for k, v in name_inputs(model, made.example_inputs).items()}
        calibration = None if made.calibration is None else {
            k: v.cpu() for k, v in name_inputs(model, made.calibration).items()}
    except InputError as exc:
        raise InputError(f"{where}: {exc.message}", hint=exc.hint) from exc
    input_set = InputSet("", named)
    input_set.label = f"bs{input_set.batch_size}"
    samples = len(next(iter(calibration.values()))) if calibration else 0
    return Workload(
        name=f"{path.name}:{function}",
        module=model,
        input_sets=[input_set],
        eval=made.eval,
        source=spec,
        task="",
        description=f"{type(model).__name__} from {where}",
        user_files={module_name: str(path)},
        calibration=calibration,
        calibration_description=f"{samples} samples from {function}() in {path.name}" if calibration else "",
        train=made.train,
    )


def _unpack(result, where: str) -> FactoryResult:
    expected = ("must return (model, example_inputs), (model, example_inputs, eval_set), a FactoryResult "
                "or a dict with its keys")
    if isinstance(result, dict):
        fields = [f.name for f in dataclasses.fields(FactoryResult)]
        unknown, missing = sorted(set(result) - set(fields), key=str), [k for k in fields[:2] if k not in result]
        if unknown or missing:
            wrong = f"unknown keys {unknown}" if unknown else f"no {' or '.join(map(repr, missing))}"
            raise InputError(f"{where} returned a dict with {wrong}", hint=f"its keys: {', '.join(fields)}")
        result = FactoryResult(**result)
    elif isinstance(result, tuple) and len(result) in (2, 3):
        result = FactoryResult(*result)
    elif not isinstance(result, FactoryResult):
        raise InputError(f"{where} {expected}, not {_describe(result)}")
    if not isinstance(result.model, torch.nn.Module):
        raise InputError(f"{where} {expected}; its model is a {type(result.model).__name__}, not a torch.nn.Module")
    for name, kind in (("eval", EvalSet), ("train", TrainSet)):
        value = getattr(result, name)
        if value is not None and not isinstance(value, kind):
            raise InputError(f"{where} {expected}; its {name} is a {type(value).__name__}, not a hone {kind.__name__}")
    return result


def _describe(value) -> str:
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    return f"a {type(value).__name__}"
