"""ONNX external data must stay inside the model's folder.

A tensor stored outside the .onnx file names its file in `external_data` ("location", relative
to the model's folder). A location that is absolute, climbs out with `..`, or reaches a file
through a symlink that points out of the folder would make a runtime read (and time, and
copy into a saved artifact) any file the process can read. So every location is checked
here, from the graph alone (`onnx.load(..., load_external_data=False)` reads no tensor data),
before any runtime opens the file. Recent onnx and ONNX Runtime releases check this too; hone
does not rely on the release it runs with.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from hone.errors import InputError, UnsafeModel

SAFETY_HINT = "keep the model's external data files in its folder (or a subfolder), named by relative paths, not links out"


def external_data_files(model_path: Path, model: Any = None) -> list[str]:
    """The external data locations of the ONNX model at `model_path` (`model`: its graph, read
    without external data, when the caller has it), each checked to resolve to a regular file
    inside the model's folder: relative paths as the graph names them, in order of first use.
    UnsafeModel for any that escapes; InputError for one that is missing."""
    import onnx

    model_path = Path(model_path)
    model = model if model is not None else read_graph(model_path)
    folder = model_path.parent.resolve()
    found: list[str] = []
    for tensor in _tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {entry.key: entry.value for entry in tensor.external_data}.get("location", "")
        if location not in found:
            check_location(location, folder, tensor.name, model_path)
            found.append(location)
    return found


def read_graph(model_path: Path) -> Any:
    """The ModelProto without its external data (no tensor file is opened)."""
    import onnx

    try:
        return onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # a protobuf that does not parse: not an ONNX model
        raise InputError(f"{model_path}: not a readable ONNX model ({type(exc).__name__}: {_first_line(exc)})",
                         hint="give a .onnx file saved by onnx.save or an exporter") from exc


def check_location(location: str, folder: Path, tensor: str, model_path: Path) -> None:
    """UnsafeModel unless `location` is a relative path that resolves (links followed) to a
    file inside `folder`; InputError when that file is not there."""
    where = f"{model_path.name}: tensor {tensor!r} keeps its data at {location!r}"
    if not location:
        raise InputError(f"{where}: an external data entry without a location", hint=SAFETY_HINT)
    if "\x00" in location:
        raise UnsafeModel(f"{where}: the location holds a NUL byte", hint=SAFETY_HINT)
    posix, windows = PurePosixPath(location), PureWindowsPath(location)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or location.startswith(("/", "\\")):
        raise UnsafeModel(f"{where}: an absolute path; hone reads external data only from the model's folder",
                          hint=SAFETY_HINT)
    if ".." in windows.parts:  # both separators split there
        raise UnsafeModel(f"{where}: a path through '..', which can climb out of the model's folder",
                          hint=SAFETY_HINT)
    target = folder / location
    resolved = target.resolve()  # follows every symlink on the way
    if resolved != folder and folder not in resolved.parents:
        raise UnsafeModel(f"{where}: a symlink that leads out of the model's folder (to {resolved})",
                          hint=SAFETY_HINT)
    if not resolved.is_file():
        raise InputError(f"{where}: no such file beside the model", hint="copy the model's data files along with it")


def _tensors(model: Any) -> Iterator[Any]:
    """Every TensorProto of the model: initializers, sparse initializers, and tensors held in
    node attributes (Constant values), in the main graph, its subgraphs and its functions."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _attribute_tensors(node)


def _graph_tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _attribute_tensors(node)


def _attribute_tensors(node: Any) -> Iterator[Any]:
    for attribute in node.attribute:
        if attribute.HasField("t"):
            yield attribute.t
        yield from attribute.tensors
        if attribute.HasField("sparse_tensor"):
            yield attribute.sparse_tensor.values
            yield attribute.sparse_tensor.indices
        if attribute.HasField("g"):
            yield from _graph_tensors(attribute.g)
        for graph in attribute.graphs:
            yield from _graph_tensors(graph)


def copy_with_external_data(model_path: Path, directory: Path) -> Path:
    """The model and its external data files copied into `directory` (checked again first: the
    files may have changed since loading), as regular files: what every step then reads and
    writes beside, so nothing is written into the user's folder. Returns the copy's path."""
    import shutil

    model_path = Path(model_path)
    files = external_data_files(model_path)
    directory.mkdir(parents=True, exist_ok=True)
    copy = directory / model_path.name
    shutil.copyfile(model_path, copy)
    folder = model_path.parent.resolve()
    for location in files:
        target = directory / location
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile((folder / location).resolve(), target)
    return copy


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

