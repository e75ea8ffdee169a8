"""`hone optimize model.onnx`: an ONNX graph as the workload.

Only ONNX-consuming recipes apply: the workload's source format is "onnx", so every chain
starts from the file (search.compose) and nothing converts it back to torch. Its `module` is
`OnnxGraph`, the graph run by ONNX Runtime on CPU with graph optimizations disabled, which is
what a user of the file has today: the reference, the profile and the baseline recipe
(`onnxruntime-disable`) run exactly that.

Before anything opens the file, its external data must stay inside its folder
(models._onnx_safety). Inputs come from the graph's declared names, shapes and dtypes; a
dynamic dimension takes its size from `--input-shape name=1x128` (LoadOptions.input_shapes),
a dimension of the same name elsewhere, the batch sizes (dim 0), or a default (batch 1, other
dimensions DEFAULT_DYNAMIC_DIM) that is recorded and warned about. No eval set: the tensor check
against the baseline decides, as for hf:<arch> models.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hone.errors import InputError
from hone.models._onnx_safety import copy_with_external_data, external_data_files, read_graph
from hone.models._synthetic_inputs import DEFAULT_DYNAMIC_DIM, example_tensor
from hone.models.options import SHAPE_HINT, LoadOptions
from hone.models.workload import InputSet, Workload

if TYPE_CHECKING:
    from hone.plugin import Artifact, BuildContext

DEFAULT_BATCH = 1
BASELINE = "ONNX Runtime, CPU, graph optimizations disabled"


@dataclasses.dataclass(frozen=True)
class GraphInput:
    """One input the graph declares: its dims (an int, a symbol's name, or None: unnamed dynamic)."""

    name: str
    dims: tuple[int | str | None, ...]
    dtype: torch.dtype
    high: int | None = None  # integer inputs: rows of the embedding table they index, if known

    def declared(self) -> str:
        return f"{self.name}[{', '.join('?' if d is None else str(d) for d in self.dims)}]"


class OnnxGraph(torch.nn.Module):
    """The ONNX file as a module: forward(**inputs) -> {output name: tensor}, run by ONNX
    Runtime on CPU with graph optimizations disabled, at torch's thread count.

    Holds the path, not a session: the session is made on first call (and again when the
    thread count changed), so the module pickles to a worker as a few strings. The graph's
    op types ride along for declarations that depend on what the graph holds."""

    def __init__(self, path: Path, dtypes: dict[str, torch.dtype], output_names: list[str], op_types: frozenset[str]):
        super().__init__()
        self.path = str(Path(path).resolve())
        self.declared_dtypes = dict(dtypes)  # input name -> dtype, in the graph's order
        self.input_names = list(dtypes)
        self.output_names = list(output_names)
        self.op_types = frozenset(op_types)
        self._runner: Any = None
        self._threads = 0

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> dict[str, torch.Tensor]:
        named = {**dict(zip(self.input_names, args)), **kwargs}
        missing = [n for n in self.input_names if n not in named]
        if missing or len(named) != len(self.input_names):
            raise InputError(f"the ONNX graph takes {self.input_names}, got {list(named)}")
        for name, tensor in named.items():
            want = self.declared_dtypes.get(name)
            if want is not None and tensor.dtype != want:
                raise InputError(f"input {name!r} is {_dtype_name(tensor.dtype)}, the ONNX graph declares {_dtype_name(want)}",
                                 hint="an ONNX graph runs in the dtypes it declares")
        outputs = self._session()(*(named[n].detach().cpu() for n in self.input_names))
        return dict(zip(self.output_names, outputs))

    def _session(self) -> Any:
        threads = torch.get_num_threads()
        if self._runner is None or self._threads != threads:
            from hone.plugin import BuildContext
            from hone.runtimes.onnxruntime import OnnxRuntime, OnnxRuntimeConfig

            path = Path(self.path)
            ctx = BuildContext((), self.input_names, self.output_names, path.parent, threads)
            # `load` opens the file as it is: no optimized copy is written beside the user's model.
            self._runner = OnnxRuntime(OnnxRuntimeConfig(graph_optimization_level="disable")).load(path.parent, [path.name], ctx)
            self._threads = threads
        return self._runner

    def double(self) -> "OnnxGraph":
        # The reference's float64 run would feed this graph its own dtypes again (integer
        # inputs) or ones it refuses: either way no float64 answer to calibrate tolerances on.
        raise NotImplementedError("an ONNX graph computes in the dtypes it declares; it has no float64 copy")

    def source_artifact(self, ctx: "BuildContext") -> "Artifact":
        """The first artifact of every recipe: the file and its data, copied into the build's
        folder (checked again), so steps write their outputs there, never beside the user's file."""
        from hone.plugin import Artifact

        return Artifact("onnx", path=copy_with_external_data(Path(self.path), ctx.workdir / "source"))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_runner"], state["_threads"] = None, 0  # a session does not pickle; made again on first call
        return state

    def extra_repr(self) -> str:
        return f"{Path(self.path).name}: {BASELINE}"


def load_onnx(spec: str, options: LoadOptions) -> Workload:
    """The Workload of the ONNX file `spec`: its external data checked first, then its inputs."""
    path = Path(spec).expanduser()
    if not path.is_file():
        raise InputError(f"{spec}: no such file", hint="give the path of an .onnx file")
    model = read_graph(path)
    data_files = external_data_files(path, model)  # UnsafeModel before any runtime opens the file
    graph = model.graph
    inputs = graph_inputs(graph)
    if not inputs:
        raise InputError(f"{path.name}: the graph declares no inputs")
    shapes, defaulted = resolve_shapes(inputs, dict(options.input_shapes), options.batch_sizes)
    largest = max(shapes)
    tensors = {i.name: example_tensor(i.name, shapes[largest][i.name], i.dtype, i.high) for i in inputs}
    input_sets = [InputSet(f"bs{b}", {n: t[:b].clone() for n, t in tensors.items()}) for b in sorted(shapes)]
    module = OnnxGraph(path, {i.name: i.dtype for i in inputs}, [o.name for o in graph.output],
                       frozenset(n.op_type for n in graph.node))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    producer = " ".join(p for p in (model.producer_name, model.producer_version) if p)
    workload = Workload(
        name=path.stem,
        module=module,
        input_sets=input_sets,
        description=f"ONNX graph {path.name} (opset {opset}{', from ' + producer if producer else ''}); baseline: {BASELINE}",
        source_format="onnx",
    )
    workload.provenance.update({
        "format": "onnx",
        "path": str(path.resolve()),
        "graph_sha256": graph_digest(graph),
        "external_data": data_files,
        "opset": opset,
        "declared_inputs": [i.declared() for i in inputs],
        "input_shapes": {s.label: {n: list(t.shape) for n, t in s.tensors.items()} for s in input_sets},
        "baseline": BASELINE,
    })
    if defaulted:
        workload.provenance["defaulted_dims"] = defaulted
        workload.provenance.setdefault("warnings", []).append(defaulted_warning(path.name, defaulted, inputs, shapes[largest]))
    return workload


def graph_inputs(graph: Any) -> list[GraphInput]:
    """The graph's real inputs (an input that is also an initializer is a weight with a default,
    as old exporters wrote them), with their dtypes and, for integer ones, the table they index."""
    initializers = {t.name: t for t in graph.initializer}
    found = []
    for value in graph.input:
        if value.name in initializers:
            continue
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            raise InputError(f"input {value.name!r} is a {kind}, hone feeds tensors only")
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):
            raise InputError(f"input {value.name!r} declares no shape (not even its rank)",
                             hint=f"give it with --input-shape {value.name}=DIMS")
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None)
                     for d in tensor_type.shape.dim)
        if not dims:
            raise InputError(f"input {value.name!r} is a scalar; hone needs a batch dimension first")
        dtype = _torch_dtype(tensor_type.elem_type, value.name)
        found.append(GraphInput(value.name, dims, dtype, None if dtype.is_floating_point else _table_rows(graph, value.name, initializers)))
    return found


def resolve_shapes(inputs: list[GraphInput], given: dict[str, tuple[int, ...]],
                   batch_sizes: tuple[int, ...] | None) -> tuple[dict[int, dict[str, tuple[int, ...]]], dict[str, dict[str, int]]]:
    """Concrete shapes per batch size ({batch: {input: shape}}) and the dimensions that got a
    default ({input: {dim index: size}}). Dim 0 is the batch: fixed where the graph fixes it,
    else the batch sizes asked for, else the size --input-shape gives it, else DEFAULT_BATCH.
    Another dynamic dimension takes --input-shape's size, else that of a dimension of the same
    name, else DEFAULT_DYNAMIC_DIM."""
    names = [i.name for i in inputs]
    unknown = [n for n in given if n not in names]
    if unknown:
        raise InputError(f"--input-shape names {unknown}, the graph's inputs are {names}", hint=SHAPE_HINT)
    for i in inputs:
        if i.name in given:
            _check_given(i, given[i.name], batch_free=batch_sizes is not None)
    symbols: dict[str, int] = {}
    for i in inputs:
        for index, (dim, size) in enumerate(zip(i.dims, given.get(i.name, ()))):
            if index and isinstance(dim, str):
                if symbols.setdefault(dim, size) != size:
                    raise InputError(f"--input-shape gives dimension {dim!r} two sizes: {symbols[dim]} and {size}", hint=SHAPE_HINT)
    sizes = _batch_sizes(inputs, given, batch_sizes)
    defaulted: dict[str, dict[str, int]] = {}
    rest: dict[str, tuple[int, ...]] = {}  # each input's dims after the batch
    for i in inputs:
        dims = []
        for index, dim in enumerate(i.dims[1:], start=1):
            if i.name in given:
                dims.append(given[i.name][index])
            elif isinstance(dim, int):
                dims.append(dim)
            elif isinstance(dim, str) and dim in symbols:
                dims.append(symbols[dim])
            else:
                dims.append(DEFAULT_DYNAMIC_DIM)
                if isinstance(dim, str):
                    symbols[dim] = DEFAULT_DYNAMIC_DIM
                defaulted.setdefault(i.name, {})[str(index)] = DEFAULT_DYNAMIC_DIM
        rest[i.name] = tuple(dims)
    shapes = {b: {i.name: (b, *rest[i.name]) for i in inputs} for b in sizes}
    return shapes, defaulted


def _check_given(i: GraphInput, shape: tuple[int, ...], batch_free: bool) -> None:
    if len(shape) != len(i.dims):
        raise InputError(f"--input-shape gives {i.name} {len(shape)} dimensions, the graph declares {i.declared()}",
                         hint=SHAPE_HINT)
    for index, (dim, size) in enumerate(zip(i.dims, shape)):
        if isinstance(dim, int) and dim != size and not (index == 0 and batch_free):
            raise InputError(f"--input-shape gives {i.name} size {size} at dimension {index}, which the graph fixes "
                             f"at {dim} ({i.declared()})", hint=SHAPE_HINT)


def _batch_sizes(inputs: list[GraphInput], given: dict[str, tuple[int, ...]],
                 batch_sizes: tuple[int, ...] | None) -> tuple[int, ...]:
    fixed = {i.dims[0] for i in inputs if isinstance(i.dims[0], int)}
    if len(fixed) > 1:
        raise InputError(f"the graph's inputs fix different sizes at dim 0 ({sorted(fixed)}): no batch dimension "
                         "hone can vary", hint="hone needs dim 0 of every input to be the batch")
    if fixed:
        batch = fixed.pop()
        if batch_sizes is not None and tuple(batch_sizes) != (batch,):
            raise InputError(f"the graph fixes the batch at {batch}; --batch-sizes asked for {list(batch_sizes)}",
                             hint=f"leave --batch-sizes out (or give {batch}): re-export the model with a dynamic batch for others")
        return (batch,)
    if batch_sizes is not None:
        return tuple(batch_sizes)
    from_shapes = {shape[0] for shape in given.values()}
    if len(from_shapes) > 1:
        raise InputError(f"--input-shape gives different batch sizes (dim 0): {sorted(from_shapes)}", hint=SHAPE_HINT)
    return (from_shapes.pop(),) if from_shapes else (DEFAULT_BATCH,)


def defaulted_warning(file: str, defaulted: dict[str, dict[str, int]], inputs: list[GraphInput],
                      shapes: dict[str, tuple[int, ...]]) -> str:
    declared = {i.name: i for i in inputs}
    parts = [f"{name} dim {index} ({declared[name].dims[int(index)] or 'unnamed'}) = {size}"
             for name, dims in defaulted.items() for index, size in dims.items()]
    example = " ".join(f"--input-shape {n}={'x'.join(map(str, shapes[n]))}" for n in defaulted)
    return (f"{file}: dynamic dimensions given a default size, which may not be what the model serves: "
            f"{'; '.join(parts)} (choose them with {example})")


def graph_digest(graph: Any) -> str:
    """The graph's structure as a digest: its nodes (op type, inputs, outputs), its weights'
    names, shapes and types and its inputs, not the weights' values (retraining changes no
    candidate's fate), like the identity hone keeps of a torch module."""
    body = {
        "nodes": [[n.op_type, n.domain, list(n.input), list(n.output)] for n in graph.node],
        "initializers": [[t.name, list(t.dims), t.data_type] for t in graph.initializer],
        "inputs": [str(v.type) for v in graph.input],
        "outputs": [v.name for v in graph.output],
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _table_rows(graph: Any, name: str, initializers: dict[str, Any]) -> int | None:
    """Rows of the embedding table(s) input `name` indexes (a Gather of an initializer by it)."""
    rows = [int(initializers[n.input[0]].dims[0]) for n in graph.node
            if n.op_type == "Gather" and len(n.input) == 2 and n.input[1] == name and n.input[0] in initializers
            and initializers[n.input[0]].dims]
    return min(rows) if rows else None


def _torch_dtype(elem_type: int, name: str) -> torch.dtype:
    import numpy as np
    import onnx

    try:
        return torch.from_numpy(np.empty(0, dtype=onnx.helper.tensor_dtype_to_np_dtype(elem_type))).dtype
    except (KeyError, TypeError, ValueError) as exc:
        kind = onnx.TensorProto.DataType.Name(elem_type) if elem_type in onnx.TensorProto.DataType.values() else elem_type
        raise InputError(f"input {name!r} is ONNX {kind}, which hone cannot feed from torch") from exc


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
