"""`program.pt2`: a torch.export program (torch.export.save), loaded without running pickles.

A .pt2 is mostly JSON and raw tensor bytes, but torch.export.load unpickles a few parts: the
saved example inputs (with a fallback to a full unpickle), tensor subclasses among the weights,
and "opaque" constants (plain pickle.loads). So it is loaded with torch's weights-only switch
forced on, after refusing an archive that holds opaque objects: what cannot load as plain
tensors is an UnsafeModel, never run.

The workload's module is the program's module (ep.module()) behind `ExportedModule`, which
makes it what hone needs from a module: picklable (workers receive it through torch.save),
called with named inputs, and deaf to .eval()/.train() (the program's mode was fixed when it
was exported; ep.module().eval() raises).

Inputs: the example inputs saved with the program when it has them, else tensors made from the
graph signature (each input's shape and dtype). Dynamic dimensions take the size --input-shape
gives, else the example's, else a default recorded as a warning in the provenance. Batch sizes
apply only where dim 0 of every input is one dynamic dimension.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib
import io
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.fx.traceback as fx_traceback

from hone._optional import is_available
from hone.errors import InputError, UnsafeModel
from hone.models._synthetic_inputs import DEFAULT_DYNAMIC_DIM, example_tensor
from hone.models.options import SHAPE_HINT, LoadOptions
from hone.models.workload import InputSet, Workload

DEFAULT_BATCH_SIZES = (1, 8)
# A dynamic dimension other than the batch, with no example and no --input-shape for it (within
# the program's range): a sequence of 128 tokens, as the other model-file loaders assume.
DEFAULT_DYNAMIC_SIZE = DEFAULT_DYNAMIC_DIM
SEED = 0
# torch.load reads this at every call: set, even a weights_only=False call loads tensors only.
_FORCE_WEIGHTS_ONLY = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
# Where a .pt2 archive keeps constants that torch.export.load would pickle.loads.
_OPAQUE_OBJECT_MARK = "data/constants/opaque_obj_"
# Packages whose pytree container types a program may name (imported before loading).
PYTREE_TYPE_PACKAGES = ("transformers",)
# A treespec's type field inside the (JSON-in-JSON, so escaped) call spec of models/*.json.
_PYTREE_TYPE = re.compile(r'\\*"type\\*":\s*\\*"([A-Za-z_][\w.]*)\\*"')
REEXPORT_HINT = "re-export with dynamic_shapes={name: {0: torch.export.Dim('batch')}} for a dynamic batch"


def load_pt2(path_text: str, options: LoadOptions) -> Workload:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: no such file", hint="give the path of a program saved by torch.export.save")
    data = path.read_bytes()
    workload = workload_from_program(data, options, path.name)
    workload.provenance["sha256"] = hashlib.sha256(data).hexdigest()
    return workload


def workload_from_program(data: bytes, options: LoadOptions, name: str) -> Workload:
    """A Workload from the bytes of a .pt2 (a user's file, or one hone converted a pickle to)."""
    program = load_program(data, name)
    module = ExportedModule(data, program)
    inputs = _program_inputs(program, module, name)
    examples = _saved_examples(program, module)
    input_sets, facts = _input_sets(program, inputs, examples, options, name)
    params = sum(p.numel() for p in module.parameters())
    return Workload(
        name=name,
        module=module,
        input_sets=input_sets,
        task="",
        description=f"torch.export program ({params / 1e6:.1f}M params) from {name}",
        provenance={"format": "pt2", **facts},
    )


def load_program(data: bytes, name: str) -> "torch.export.ExportedProgram":
    """torch.export.load with every pickle it would read held to plain tensors."""
    _refuse_opaque_objects(data, name)
    _import_pytree_types(data)
    try:
        with _weights_only():
            return torch.export.load(io.BytesIO(data))
    except pickle.UnpicklingError as exc:
        raise UnsafeModel(
            f"{name}: holds pickled objects beyond plain tensors; hone does not unpickle them",
            hint="re-export with plain tensor weights and example inputs (no tensor subclasses or custom objects): "
            f"{_first_line(exc)}",
        ) from None
    except Exception as exc:  # torch's own errors: not a program, a newer format, a missing custom op
        raise InputError(f"{name}: torch.export.load failed: {_first_line(exc)}",
                         hint="save the program with torch.export.save from this torch version") from None


def _refuse_opaque_objects(data: bytes, name: str) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        raise InputError(f"{name}: not a torch.export archive (not a zip file)",
                         hint="save the program with torch.export.save") from None
    opaque = [n for n in names if _OPAQUE_OBJECT_MARK in n]
    if opaque:
        raise UnsafeModel(f"{name}: holds {len(opaque)} pickled Python object(s) among its constants; "
                          "loading them would run arbitrary code", hint="re-export without opaque Python constants")
    if not any(_is_program_entry(n) for n in names):
        what = "an AOTInductor package" if any("data/aotinductor/" in n for n in names) else "no exported program"
        raise InputError(f"{name}: {what}, not a torch.export program",
                         hint="give a file written by torch.export.save(torch.export.export(model, inputs), path)")


def _import_pytree_types(data: bytes) -> None:
    """Import the known libraries whose types the program's inputs or outputs use (transformers'
    ModelOutputs): torch.export.load finds a container type only once its module registered it,
    and a worker, or a fresh `hone optimize`, has not imported transformers yet. Only modules of
    PYTREE_TYPE_PACKAGES: a name in a file is not a reason to import just anything."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        specs = [archive.read(n).decode("utf-8", "replace") for n in archive.namelist()
                 if _is_program_entry(n)]
    modules = {match.rsplit(".", 1)[0] for text in specs for match in _PYTREE_TYPE.findall(text)}
    for module in sorted(modules):
        if module.split(".")[0] in PYTREE_TYPE_PACKAGES and is_available(module.split(".")[0]):
            try:
                importlib.import_module(module)
            except ImportError:
                pass  # torch.export.load then names the type it cannot find


def _is_program_entry(name: str) -> bool:
    """models/<name>.json: an exported program's graph and call spec inside the archive."""
    return ("/models/" in name or name.startswith("models/")) and name.endswith(".json")


@contextlib.contextmanager
def _weights_only() -> Iterator[None]:
    before = os.environ.get(_FORCE_WEIGHTS_ONLY)
    os.environ[_FORCE_WEIGHTS_ONLY] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_FORCE_WEIGHTS_ONLY, None)
        else:
            os.environ[_FORCE_WEIGHTS_ONLY] = before


class ExportedModule(torch.nn.Module):
    """An exported program's module, as hone handles modules.

    Pickled as the program's bytes plus the current state dict (the unlifted graph module holds
    closures that do not pickle); copied by deep-copying the graph. Called with inputs by name
    or position, in the program's input order."""

    def __init__(self, data: bytes, program: "torch.export.ExportedProgram | None" = None):
        super().__init__()
        program = program if program is not None else load_program(data, "program")
        self.arg_names, self.kwarg_names = _input_names(program)
        self.program_bytes = data
        self.program = program.module()
        _paths_under_flatio(self.program.graph)

    @property
    def input_names(self) -> list[str]:
        return [*self.arg_names, *self.kwarg_names]

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> Any:
        named = {**dict(zip(self.input_names, args)), **kwargs}
        missing = [n for n in self.input_names if n not in named]
        if missing or len(named) != len(self.input_names):
            raise TypeError(f"the program takes {self.input_names}, got {sorted(named)}")
        if torch.compiler.is_exporting():
            # Re-exported (ONNX, pt2e, AOTInductor): run the graph node by node with each node's
            # metadata preserved, so the new graph keeps the layers' module paths and types
            # (nn_module_stack) that quantizers and keep-float scopes match; the generated
            # forward would record none, and pt2e would find no Linear to quantize.
            with fx_traceback.preserve_node_meta():
                return torch.fx.Interpreter(self.program).run(*(named[n] for n in self.input_names))
        return self.program(*(named[n] for n in self.arg_names), **{n: named[n] for n in self.kwarg_names})

    def train(self, mode: bool = True) -> "ExportedModule":
        self.training = mode  # not the graph's: its mode was fixed at export
        return self

    def __reduce__(self):
        return _rebuild, (self.program_bytes, self.program.state_dict())

    def __deepcopy__(self, memo: dict) -> "ExportedModule":
        clone = ExportedModule.__new__(ExportedModule)
        memo[id(self)] = clone
        with warnings.catch_warnings():
            # torch's copy of the graph module trips torch's own LeafSpec deprecation: not ours to act on
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            clone.__dict__.update({k: copy.deepcopy(v, memo) for k, v in self.__dict__.items()})
        return clone


def _paths_under_flatio(graph: torch.fx.Graph) -> None:
    """Module paths in the nodes' nn_module_stack as hone names layers: inside FlatIO's `module`
    (this wrapper) and its `program` (the graph), like `named_modules()` of the wrapped module."""
    from hone.passes.quantize import FLATIO_PREFIX

    root = FLATIO_PREFIX + "program"
    for node in graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if stack:
            node.meta["nn_module_stack"] = {key: (f"{root}.{path}" if path else root, kind)
                                            for key, (path, kind) in stack.items()}


def _rebuild(data: bytes, state: Mapping[str, torch.Tensor]) -> ExportedModule:
    module = ExportedModule(data)
    module.program.load_state_dict(state)
    return module


def _input_names(program: "torch.export.ExportedProgram") -> tuple[list[str], list[str]]:
    """Positional and keyword input names, from the call spec: (args, kwargs) of flat tensors."""
    spec = program.call_spec.in_spec
    user_inputs = list(program.graph_signature.user_inputs)
    parts = spec.children() if spec is not None else []
    if len(parts) != 2 or not all(c.is_leaf() for part in parts for c in part.children()):
        raise InputError("the program's inputs are nested containers; hone feeds flat tensors",
                         hint="export a module whose forward takes tensors (not tuples, lists or dicts of them)")
    n_args = parts[0].num_children
    kwarg_names = [str(k) for k in (parts[1].context or [])]
    if n_args + len(kwarg_names) != len(user_inputs):
        raise InputError("the program takes non-tensor inputs (constants fixed at export)",
                         hint="export a module whose forward takes only tensors")
    return [str(n) for n in user_inputs[:n_args]], kwarg_names


def _program_inputs(program, module: ExportedModule, name: str) -> dict[str, tuple[tuple[Any, ...], torch.dtype]]:
    """Input name -> (dims, dtype): a dim is an int, or a sympy expression when dynamic."""
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    inputs = {}
    for graph_name, input_name in zip(program.graph_signature.user_inputs, module.input_names):
        value = placeholders[graph_name].meta.get("val")
        if not isinstance(value, torch.Tensor):
            raise InputError(f"{name}: input {input_name!r} is not a tensor", hint="export a module taking only tensors")
        if value.dim() == 0:
            raise InputError(f"{name}: input {input_name!r} is a scalar; hone needs a batch dimension first")
        dims = tuple(d if isinstance(d, int) else d.node.expr for d in value.shape)
        inputs[input_name] = (dims, value.dtype)
    return inputs


def _saved_examples(program, module: ExportedModule) -> dict[str, torch.Tensor]:
    """The example inputs torch.export stored with the program, by name ({} when it has none)."""
    saved = getattr(program, "example_inputs", None)
    if not saved:
        return {}
    args, kwargs = saved
    values = [*args, *(kwargs.get(n) for n in module.kwarg_names)]
    if len(values) != len(module.input_names) or not all(isinstance(v, torch.Tensor) for v in values):
        return {}
    return {n: v.detach().cpu() for n, v in zip(module.input_names, values)}


def _input_sets(program, inputs, examples: dict[str, torch.Tensor], options: LoadOptions, name: str):
    """One InputSet per batch size, and the facts the provenance records."""
    ranges = {sym: _bounds(r) for sym, r in program.range_constraints.items()}
    given = dict(options.input_shapes)
    unknown = sorted(set(given) - set(inputs))
    if unknown:
        raise InputError(f"{name}: --input-shape names {unknown}, the program's inputs are {list(inputs)}",
                         hint=SHAPE_HINT)
    batch = _batch_symbol(inputs)
    sizes = _bind_given(inputs, given, name)
    given_batch = sizes.pop(batch, None)
    for input_name, tensor in examples.items():  # the saved example's sizes, where none were given
        for dim, size in zip(inputs[input_name][0], tensor.shape):
            if _is_symbol(dim) and dim != batch:
                sizes.setdefault(dim, int(size))
    defaulted = _bind_defaults(inputs, sizes, batch, ranges)
    batch_sizes = _batch_sizes(inputs, batch, given_batch, sizes, ranges, options.batch_sizes, name)
    for sym, size in sizes.items():
        _check_range(sym, size, ranges, inputs, name)
    generator = torch.Generator().manual_seed(SEED)
    input_sets = []
    for b in batch_sizes:
        bound = {**sizes, batch: b} if batch is not None else sizes
        tensors = {n: _tensor(n, _concrete(dims, bound), dtype, examples.get(n), generator)
                   for n, (dims, dtype) in inputs.items()}
        input_sets.append(InputSet(f"bs{b}", tensors))
    return input_sets, _facts(inputs, examples, given, defaulted, batch, batch_sizes, name)


def _bind_defaults(inputs, sizes: dict[Any, int], batch, ranges) -> dict[str, int]:
    """A size for every dynamic dimension still unbound (the batch aside); returns what it chose
    per "input[axis]", for the warning."""
    defaulted = {}
    for input_name, (dims, _) in inputs.items():
        for axis, dim in enumerate(dims):
            for sym in _free_symbols(dim):
                if sym not in sizes and sym != batch:
                    low, high = ranges.get(sym, (0, None))
                    sizes[sym] = max(low, DEFAULT_DYNAMIC_SIZE if high is None else min(high, DEFAULT_DYNAMIC_SIZE))
                    defaulted[f"{input_name}[{axis}]"] = sizes[sym]
    return defaulted


def _facts(inputs, examples, given, defaulted: dict[str, int], batch, batch_sizes, name: str) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "inputs": "example inputs saved with the program" if examples else "made from the program's signature",
        "batch": "dynamic" if batch is not None else f"static ({batch_sizes[0]})",
        "dynamic_dims": {n: [a for a, d in enumerate(dims) if not isinstance(d, int)] for n, (dims, _) in inputs.items()
                         if any(not isinstance(d, int) for d in dims)},
    }
    notes = []
    if given:
        facts["input_shapes"] = {n: list(s) for n, s in given.items()}
    if defaulted:
        facts["defaulted_dims"] = defaulted
        notes.append(f"{name}: dynamic dimensions {', '.join(defaulted)} had no size from --input-shape or saved "
                         f"example inputs; hone used {sorted(set(defaulted.values()))} (give --input-shape for the "
                         "sizes you serve)")
    if not examples:
        notes.append(f"{name}: no example inputs saved with the program: inputs are random (floats) and 0/1 "
                         "(integers)")
    if notes:
        facts["warnings"] = notes
    return facts


def _bind_given(inputs, given: Mapping[str, tuple[int, ...]], name: str) -> dict[Any, int]:
    """Sizes of dynamic dimensions from --input-shape; static ones must match the program."""
    sizes: dict[Any, int] = {}
    for input_name, shape in given.items():
        dims = inputs[input_name][0]
        want = "x".join(str(d) if isinstance(d, int) else "?" for d in dims)
        if len(shape) != len(dims):
            raise InputError(f"{name}: input {input_name!r} has {len(dims)} dimensions ({want}), "
                             f"--input-shape gives {len(shape)}", hint=SHAPE_HINT)
        for axis, (dim, size) in enumerate(zip(dims, shape)):
            if isinstance(dim, int) and dim != size:
                raise InputError(f"{name}: dim {axis} of input {input_name!r} is fixed at {dim} in the program "
                                 f"({want}), --input-shape gives {size}", hint="give the fixed sizes as they are")
            if _is_symbol(dim):
                if sizes.setdefault(dim, size) != size:
                    raise InputError(f"{name}: --input-shape gives two sizes ({sizes[dim]}, {size}) to one dynamic "
                                     f"dimension of the program (dim {axis} of {input_name!r} among them)",
                                     hint="the program requires those dimensions to be equal")
    return sizes


def _batch_symbol(inputs) -> Any:
    """The one symbol at dim 0 of every input, or None: the batch is static."""
    firsts = {dims[0] for dims, _ in inputs.values()}
    first = next(iter(firsts))
    return first if len(firsts) == 1 and _is_symbol(first) else None


def _batch_sizes(inputs, batch, given_batch: int | None, sizes, ranges, requested: Sequence[int] | None,
                 name: str) -> tuple[int, ...]:
    """--batch-sizes, else the batch --input-shape gives, else the defaults (a dynamic batch) or
    the program's one batch (a static one)."""
    if batch is None:
        fixed = sorted({_concrete(dims[:1], sizes)[0] for dims, _ in inputs.values()})
        if requested is not None:
            raise InputError(f"{name}: --batch-sizes does not apply: the program was exported with a static batch "
                             f"(dim 0 is {', '.join(map(str, fixed))})", hint=f"leave out --batch-sizes, or {REEXPORT_HINT}")
        return (fixed[0],)
    low, high = ranges.get(batch, (0, None))
    chosen = tuple(requested) if requested is not None else (given_batch,) if given_batch is not None else None
    if chosen is None:
        fitting = tuple(b for b in DEFAULT_BATCH_SIZES if b >= low and (high is None or b <= high))
        return fitting or (max(low, 1),)
    for b in chosen:
        if b < low or (high is not None and b > high):
            raise InputError(f"{name}: batch size {b} is outside the program's batch range [{low}, {high or 'inf'}]",
                             hint="give batch sizes inside the range the program was exported with")
    return chosen


def _check_range(sym, size: int, ranges, inputs, name: str) -> None:
    low, high = ranges.get(sym, (0, None))
    if size < low or (high is not None and size > high):
        where = next((f"dim {a} of {n!r}" for n, (dims, _) in inputs.items() for a, d in enumerate(dims) if d == sym),
                     f"the dynamic dimension {sym}")
        raise InputError(f"{name}: size {size} for {where} is outside the program's range [{low}, {high or 'inf'}]",
                         hint=SHAPE_HINT)


def _bounds(value_range) -> tuple[int, int | None]:
    upper = value_range.upper
    return int(value_range.lower), int(upper) if getattr(upper, "is_Integer", False) else None


def _is_symbol(dim: Any) -> bool:
    return getattr(dim, "is_Symbol", False)


def _free_symbols(dim: Any) -> set:
    return set() if isinstance(dim, int) else set(dim.free_symbols)


def _concrete(dims: Sequence[Any], sizes: Mapping[Any, int]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else int(d.xreplace(dict(sizes))) for d in dims)


def _tensor(name: str, shape: tuple[int, ...], dtype: torch.dtype, example: torch.Tensor | None,
            generator: torch.Generator) -> torch.Tensor:
    """The saved example's rows (repeated to the batch) where its shape fits, else made up."""
    if example is not None and example.dim() == len(shape) and tuple(example.shape[1:]) == shape[1:] and len(example):
        rows = torch.arange(shape[0]) % example.shape[0]
        return example.index_select(0, rows).to(dtype)
    return synthetic_tensor(name, shape, dtype, generator)


def synthetic_tensor(name: str, shape: Sequence[int], dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    """Made-up input values valid for any model (models._synthetic_inputs), with integers 0 or 1:
    a program does not say how large the embedding table an index input reads is."""
    return example_tensor(name, tuple(shape), dtype, high=2, generator=generator)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
