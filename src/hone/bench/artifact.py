"""Saved artifacts opened for timing (`hone bench`, `hone verify`): one function per kind.

    export directory     hone.load (its recipe's runtime, checksums and outputs checked)
    model.onnx           ONNX Runtime, CPU execution provider
    model.pt2            torch.export.load, then the program's module
    model.xml (+ .bin)   OpenVINO, CPU plugin

Each returns an OpenedArtifact: the inputs the artifact declares (an export directory's are its
saved example inputs) and `prepare(threads, inputs)`, which loads a session at that thread count
and binds the inputs, giving the zero-argument call that is timed. Binding first keeps the
conversion to the runtime's own arrays out of the timed call, as ONNX Runtime or OpenVINO users
would hold them.

A bare graph file carries no data, so its inputs are made from what it declares: random normal
floats; integers uniform in [0, 100) (valid token ids for any vocabulary of that size or
more); ones for an integer or bool input whose name says mask, zeros for token type ids (the
model-file loaders' rule: models._synthetic_inputs). A
dynamic dimension takes --input-shape, else DEFAULT_BATCH for dim 0 and DEFAULT_DYNAMIC_DIM for
any other, with a warning.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from hone.errors import HoneError, InputError
from hone.models._synthetic_inputs import DEFAULT_DYNAMIC_DIM, example_tensor
from hone.models.options import SHAPE_HINT
from hone.plugin import first_line

DEFAULT_BATCH = 1
SEED = 0
KINDS = "an export directory (hone optimize --export), a .onnx, a .pt2 (torch.export) or an OpenVINO .xml"

KIND_NAMES = {".onnx": "an ONNX model", ".pt2": "a torch.export program", ".xml": "an OpenVINO IR"}

Prepared = Callable[[], Any]


@dataclasses.dataclass(frozen=True)
class DeclaredInput:
    name: str
    shape: tuple[int | None, ...] | None  # None entries: dynamic; None: not even the rank is known
    dtype: torch.dtype
    # The least size each dynamic dimension takes (torch.export's range constraints: a batch
    # traced symbolic from 2 may refuse 1); None: 1.
    least: tuple[int, ...] | None = None


@dataclasses.dataclass
class OpenedArtifact:
    kind: str  # "export", "onnx", "pt2" or "openvino"
    path: Path
    inputs: list[DeclaredInput]
    prepare: Callable[[int, tuple[torch.Tensor, ...]], Prepared]  # (threads, inputs) -> timed call
    examples: tuple[torch.Tensor, ...] | None = None  # an export directory's saved inputs
    # Batch axis of each input (an export directory's manifest); None: not recorded.
    batch_axes: list[int] | None = None
    manifest: dict[str, Any] | None = None
    device: str = "cpu"


def open_artifact(path: str | Path) -> OpenedArtifact:
    """The artifact at `path`, by kind; InputError (one line) for anything it cannot open."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist", hint=f"give {KINDS}")
    if path.is_dir():
        return open_export(path)
    openers = {".onnx": open_onnx, ".pt2": open_pt2, ".xml": open_openvino}
    opener = openers.get(path.suffix.lower())
    if opener is None:
        raise InputError(f"{path}: not an artifact hone can time", hint=f"give {KINDS}")
    try:
        return opener(path)
    except HoneError:
        raise
    except Exception as exc:  # a corrupt or foreign file: one line, never a traceback
        raise InputError(f"{path} could not be read as {KIND_NAMES[path.suffix.lower()]}: {first_line(exc)}",
                         hint="is the file complete and of that format?") from exc


def open_export(directory: Path) -> OpenedArtifact:
    from hone import export

    manifest = export.verify(directory)  # checksums first: a tampered file is never loaded
    examples, _ = export.load_examples(directory, manifest)
    device = (manifest.get("timing") or {}).get("device", "cpu")
    axes = (manifest.get("batch_axes") or {}).get("inputs")
    inputs = [DeclaredInput(name, tuple(t.shape), t.dtype) for name, t in zip(manifest["input_names"], examples)]

    def prepare(threads: int, tensors: tuple[torch.Tensor, ...]) -> Prepared:
        runner = export.load(directory, threads=threads, device=device)
        on_device = tuple(t.to(device) for t in tensors)
        return lambda: runner(*on_device)

    return OpenedArtifact("export", directory, inputs, prepare, examples,
                          [axes] * len(inputs) if isinstance(axes, int) else axes, manifest, device)


def open_onnx(path: Path) -> OpenedArtifact:
    from hone._optional import require

    from hone.models._onnx_safety import external_data_files

    external_data_files(path)  # external data outside the model's folder: refused before ORT opens it
    ort = require("onnxruntime")
    probe = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = [DeclaredInput(i.name, tuple(d if isinstance(d, int) and d > 0 else None for d in i.shape),
                            _onnx_dtype(i.name, i.type)) for i in probe.get_inputs()]
    del probe

    def prepare(threads: int, tensors: tuple[torch.Tensor, ...]) -> Prepared:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {d.name: t.numpy() for d, t in zip(inputs, tensors)}
        return lambda: session.run(None, feeds)

    return OpenedArtifact("onnx", path, inputs, prepare)


def open_pt2(path: Path) -> OpenedArtifact:
    import logging
    import zipfile

    if not zipfile.is_zipfile(path):  # torch.export.load would log a traceback before raising
        raise InputError(f"{path} is not a torch.export program (not a zip archive)", hint="is the file complete?")
    quiet = logging.getLogger("torch.export")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it logs each failed attempt with its traceback, then raises
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise InputError(f"{path} is not a torch.export program: {first_line(exc)}",
                         hint="an AOTInductor package is timed through the export directory it came in") from exc
    finally:
        quiet.setLevel(level)
    user_inputs = set(program.graph_signature.user_inputs)
    lower = _symbol_lower_bounds(program)
    inputs = []
    for node in program.graph.nodes:
        value = node.meta.get("val")
        if node.op != "placeholder" or node.name not in user_inputs or not isinstance(value, torch.Tensor):
            continue
        inputs.append(DeclaredInput(node.name, tuple(d if isinstance(d, int) else None for d in value.shape), value.dtype,
                                    tuple(lower.get(str(d), 1) for d in value.shape)))
    module = program.module()

    def prepare(threads: int, tensors: tuple[torch.Tensor, ...]) -> Prepared:
        def call() -> Any:
            with torch.inference_mode():
                return module(*tensors)
        return call

    return OpenedArtifact("pt2", path, inputs, prepare)


def open_openvino(path: Path) -> OpenedArtifact:
    from hone._optional import block_usage_telemetry, require

    block_usage_telemetry()  # before openvino's first import in this process
    ov = require("openvino")
    weights = path.with_suffix(".bin")
    if not _is_openvino_ir(path):  # else the reader tries every frontend and reports the last
        raise InputError(f"{path} is not an OpenVINO IR (an XML document whose root is <net>)",
                         hint="convert the model with openvino.save_model, which writes the .xml and its .bin")
    if not weights.is_file():
        raise InputError(f"{path}: its weights {weights.name} are not beside it", hint="keep the .xml and .bin together")
    core = ov.Core()
    model = core.read_model(str(path), str(weights))
    inputs = []
    for port in model.inputs:
        shape = port.get_partial_shape()
        dims = None if shape.rank.is_dynamic else tuple(d.get_length() if d.is_static else None for d in shape)
        inputs.append(DeclaredInput(port.get_any_name(), dims, _numpy_to_torch(port.get_element_type().to_dtype())))

    def prepare(threads: int, tensors: tuple[torch.Tensor, ...]) -> Prepared:
        compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        feeds = {d.name: t.numpy() for d, t in zip(inputs, tensors)}
        return lambda: request.infer(feeds)

    return OpenedArtifact("openvino", path, inputs, prepare)


# -- inputs -------------------------------------------------------------------------------------

def inputs_for(artifact: OpenedArtifact, batch: int | None, shapes: Mapping[str, tuple[int, ...]],
               warnings: list[str]) -> tuple[torch.Tensor, ...] | str:
    """The inputs for one row at `batch` (None: the artifact's own), or why there are none
    (the artifact does not take that batch). Defaults taken for dynamic dimensions are added to
    `warnings` once."""
    if artifact.examples is not None:
        return _resized_examples(artifact, batch)
    generator = torch.Generator().manual_seed(SEED)
    tensors = []
    for decl in artifact.inputs:
        shape = _concrete_shape(artifact, decl, shapes.get(decl.name), warnings)
        if batch is not None and shape and batch != shape[0]:
            if decl.shape is not None and decl.shape[0] is not None:
                return f"{decl.name} has a fixed batch of {decl.shape[0]}"
            shape = (batch, *shape[1:])
        tensors.append(synthetic_input(decl.name, shape, decl.dtype, generator))
    return tuple(tensors)


def default_batch(artifact: OpenedArtifact, shapes: Mapping[str, tuple[int, ...]]) -> int:
    """The batch a row without --batch-sizes runs at: the examples', the shape given, the fixed one, or 1."""
    if artifact.examples is not None:
        return int(artifact.examples[0].shape[0]) if artifact.examples and artifact.examples[0].dim() else 1
    first = artifact.inputs[0] if artifact.inputs else None
    if first is None:
        return DEFAULT_BATCH
    if first.name in shapes and shapes[first.name]:
        return shapes[first.name][0]
    if first.shape and first.shape[0] is not None:
        return first.shape[0]
    return max(DEFAULT_BATCH, first.least[0]) if first.least else DEFAULT_BATCH


def _resized_examples(artifact: OpenedArtifact, batch: int | None) -> tuple[torch.Tensor, ...] | str:
    examples = artifact.examples or ()
    have = int(examples[0].shape[0]) if examples and examples[0].dim() else None
    if batch is None or batch == have:
        return examples
    if artifact.batch_axes is None:
        return f"the manifest records no batch axes; its examples are at batch {have} (export again with this hone)"
    return resize_batch(examples, batch, artifact.batch_axes)


def resize_batch(inputs: tuple[torch.Tensor, ...], batch: int, axes: list[int] | None = None) -> tuple[torch.Tensor, ...]:
    """`inputs` at another batch size, rows repeated cyclically along each input's batch axis
    (default dim 0): token ids and masks stay valid values, which random data would not."""
    resized = []
    for i, t in enumerate(inputs):
        axis = axes[i] if axes is not None else 0
        rows = torch.arange(batch, device=t.device) % int(t.shape[axis])
        resized.append(t.index_select(axis, rows).contiguous())
    return tuple(resized)


def _concrete_shape(artifact: OpenedArtifact, decl: DeclaredInput, given: tuple[int, ...] | None,
                    warnings: list[str]) -> tuple[int, ...]:
    if given is not None:
        if decl.shape is not None and (len(given) != len(decl.shape) or any(
                d is not None and d != g for d, g in zip(decl.shape, given))):
            declared = "x".join("?" if d is None else str(d) for d in decl.shape)
            raise InputError(f"--input-shape {decl.name}={'x'.join(map(str, given))} does not fit the declared {declared}",
                             hint="give every dimension; fixed ones as declared")
        return tuple(given)
    if decl.shape is None:
        raise InputError(f"{artifact.path} does not declare the rank of input {decl.name!r}", hint=SHAPE_HINT)
    least = decl.least or (1,) * len(decl.shape)
    shape = []
    for axis, d in enumerate(decl.shape):
        if d is not None:
            shape.append(d)
            continue
        default = max(DEFAULT_BATCH if axis == 0 else DEFAULT_DYNAMIC_DIM, least[axis])
        shape.append(default)
        if axis:  # the batch has its own option (--batch-sizes)
            note = (f"{decl.name}: dynamic dimension {axis} set to {default} "
                    f"(--input-shape {decl.name}=... to choose)")
            if note not in warnings:
                warnings.append(note)
    return tuple(shape)


def synthetic_input(name: str, shape: tuple[int, ...], dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    """Data of the declared dtype that the model can take (models._synthetic_inputs, the rules
    the model-file loaders use)."""
    return example_tensor(name, shape, dtype, generator=generator)


# -- dtypes -------------------------------------------------------------------------------------

_ONNX_TYPES = {
    "tensor(float)": torch.float32, "tensor(float16)": torch.float16, "tensor(double)": torch.float64,
    "tensor(bfloat16)": torch.bfloat16, "tensor(int64)": torch.int64, "tensor(int32)": torch.int32,
    "tensor(int16)": torch.int16, "tensor(int8)": torch.int8, "tensor(uint8)": torch.uint8, "tensor(bool)": torch.bool,
}


def _onnx_dtype(name: str, onnx_type: str) -> torch.dtype:
    if onnx_type not in _ONNX_TYPES:
        raise InputError(f"input {name!r} is {onnx_type}, which hone cannot make data for",
                         hint=f"inputs of {', '.join(_ONNX_TYPES)}")
    return _ONNX_TYPES[onnx_type]


def _numpy_to_torch(np_dtype: Any) -> torch.dtype:
    import numpy

    return torch.from_numpy(numpy.empty(0, dtype=np_dtype)).dtype


def _is_openvino_ir(path: Path) -> bool:
    import xml.etree.ElementTree as ElementTree

    try:
        for _, element in ElementTree.iterparse(str(path), events=("start",)):
            return element.tag == "net"  # the root alone: the graph itself may be large
    except ElementTree.ParseError:
        return False
    return False


def _symbol_lower_bounds(program: Any) -> dict[str, int]:
    bounds = {}
    for symbol, value_range in getattr(program, "range_constraints", {}).items():
        try:
            bounds[str(symbol)] = int(value_range.lower)
        except (TypeError, ValueError, OverflowError):  # -oo / sympy infinities
            continue
    return bounds
