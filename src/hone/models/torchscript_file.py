"""`hone optimize model.jit` (or a .pt that holds a TorchScript archive): a scripted or traced
module as the workload.

A TorchScript archive is a zip of code and tensors that `torch.jit.load` reads with its own
restricted unpickler (TorchScript types only): loading it runs no arbitrary Python, unlike a
pickled .pt. It is told from a pickle by its entries alone (`<name>/code/...`,
`<name>/constants.pkl`), nothing unpickled. Its source format is "torchscript": the steps that
take a ScriptModule (eager, hone's TorchScript runtime, OpenVINO's converter, the TorchScript
ONNX exporter) compose; torch.export, Dynamo and the torch-level passes cannot capture one.

The archive records no input shapes, only the forward's argument names: `--input-shape
name=DIMS` gives each (dtype: int64 for `*ids` and `*mask*` names, else float32). Dim 0 is the
batch; `--batch-sizes` varies it. No eval set: the tensor check decides.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hone.errors import InputError
from hone.models._synthetic_inputs import default_dtype, example_tensor
from hone.models.options import SHAPE_HINT, LoadOptions
from hone.models.workload import InputSet, Workload

if TYPE_CHECKING:
    from hone.plugin import Artifact, BuildContext

BASELINE = "the TorchScript module as loaded, unfrozen"


def is_torchscript_archive(path: str | Path) -> bool:
    """Whether `path` is a zip holding a TorchScript archive: `<name>/code/` entries or a
    `<name>/constants.pkl`, which torch.save's zips never have. Reads the zip's directory only."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.split("/")[1:2] == ["code"] or n.count("/") == 1 and n.endswith("/constants.pkl") for n in names)


class TorchScriptArchive(torch.nn.Module):
    """The archive as a module: forward runs the loaded ScriptModule as is.

    A ScriptModule does not pickle, so this keeps the archive's bytes and pickles as them: a
    worker (or a deepcopy) loads them again with torch.jit.load."""

    def __init__(self, archive: bytes, name: str):
        super().__init__()
        self.archive, self.archive_name = archive, name
        self.script = _load(archive, name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.script(*args, **kwargs)

    def source_artifact(self, ctx: "BuildContext") -> "Artifact":
        """The first artifact of every recipe: the ScriptModule itself behind FlatIO's I/O (a
        step that scripts or freezes it needs it unwrapped, one level down)."""
        from hone.models.workload import FlatIO
        from hone.plugin import Artifact

        return Artifact("torchscript", FlatIO(self.script, ctx.input_names, ctx.output_names).eval())

    def __reduce__(self) -> tuple[Any, tuple[bytes, str]]:
        return _restore, (self.archive, self.archive_name)

    def extra_repr(self) -> str:
        return f"{self.archive_name}: {BASELINE}"


def _restore(archive: bytes, name: str) -> TorchScriptArchive:
    return TorchScriptArchive(archive, name).eval()


def _load(archive: bytes, name: str) -> torch.jit.ScriptModule:
    try:
        return torch.jit.load(io.BytesIO(archive), map_location="cpu").eval()
    except Exception as exc:  # a damaged archive, or one from an incompatible torch
        text = str(exc).strip().splitlines()
        raise InputError(f"{name}: torch.jit.load could not read the TorchScript archive "
                         f"({type(exc).__name__}: {text[0] if text else ''})",
                         hint="save it with torch.jit.save from a compatible torch release") from exc


def forward_arguments(script: torch.jit.ScriptModule) -> tuple[list[str], list[str]]:
    """(required, optional) argument names of the script's forward, self excluded."""
    try:
        arguments = script.forward.schema.arguments[1:]
    except (AttributeError, RuntimeError) as exc:
        raise InputError("the TorchScript archive has no forward method to call") from exc
    required, optional = [], []
    for argument in arguments:
        if not str(argument.type).startswith(("Tensor", "Optional[Tensor]")):
            if argument.has_default_value():
                continue  # a flag or size with its default: not fed
            raise InputError(f"forward's argument {argument.name!r} is a {argument.type}; hone feeds tensors only")
        (optional if argument.has_default_value() else required).append(argument.name)
    return required, optional


def load_torchscript(spec: str, options: LoadOptions) -> Workload:
    path = Path(spec).expanduser()
    if not path.is_file():
        raise InputError(f"{spec}: no such file", hint="give the path of a TorchScript archive (torch.jit.save)")
    if not is_torchscript_archive(path):
        raise InputError(f"{path.name}: not a TorchScript archive (no code/ or constants.pkl entries)",
                         hint="save the module with torch.jit.save(torch.jit.script(model), path)")
    module = TorchScriptArchive(path.read_bytes(), path.name).eval()
    required, optional = forward_arguments(module.script)
    given = dict(options.input_shapes)
    missing = [n for n in required if n not in given]
    if missing:
        raise InputError(f"{path.name}: a TorchScript archive records no input shapes; give the shape of "
                         f"forward's {', '.join(missing)}",
                         hint=" ".join(f"--input-shape {n}=DIMS" for n in missing) + " (DIMS like 1x128, dim 0 the batch)")
    unknown = [n for n in given if n not in required + optional]
    if unknown:
        raise InputError(f"--input-shape names {unknown}, forward takes {required + optional}", hint=SHAPE_HINT)
    names = [n for n in required + optional if n in given]  # forward's order: positional calls keep it
    batches = {shape[0] for shape in given.values()}
    if len(batches) != 1:
        raise InputError(f"--input-shape gives different batch sizes (dim 0): {sorted(batches)}", hint=SHAPE_HINT)
    sizes = options.batch_sizes or (batches.pop(),)
    largest = max(sizes)
    tensors = {n: example_tensor(n, (largest, *given[n][1:]), default_dtype(n)) for n in names}
    input_sets = [InputSet(f"bs{b}", {n: t[:b].clone() for n, t in tensors.items()}) for b in sorted(sizes)]
    workload = Workload(
        name=path.stem,
        module=module,
        input_sets=input_sets,
        description=f"TorchScript archive {path.name}; baseline: {BASELINE}",
        source_format="torchscript",
    )
    workload.provenance.update({
        "format": "torchscript",
        "path": str(path.resolve()),
        "forward": str(module.script.forward.schema),
        "input_shapes": {s.label: {n: list(t.shape) for n, t in s.tensors.items()} for s in input_sets},
        "input_dtypes": {n: str(t.dtype).removeprefix("torch.") for n, t in tensors.items()},
        "baseline": BASELINE,
    })
    return workload
