"""Saving a built candidate as a deployable artifact, and loading it back.

    hone.export.save(runner, recipe, "out/", ...)   # the runtime's own product + manifest.json
    runner = hone.load("out/")                       # rebuilt by the recipe's runtime

Each runtime writes its own product (`Runner.save`): an ONNX file, an OpenVINO IR, a
TorchScript archive, an AOTInductor .pt2 package, a TVM library, a TensorRT engine; eager and
torch.compile candidates save a torch.export program. `manifest.json` says which runtime and
config read it back, the input and output names, the example input shapes, and what ran when
it was built. Loading reads only the manifest (JSON) and the runtime's own format: no pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hone.errors import InputError

if TYPE_CHECKING:
    import torch

    from hone.runtimes.base import Runner
    from hone.search.recipe import Recipe

MANIFEST = "manifest.json"
FORMAT = "hone-artifact"
VERSION = 1


def save(
    runner: "Runner",
    recipe: "Recipe",
    directory: str | Path,
    *,
    input_names: list[str],
    output_names: list[str],
    example_inputs: "tuple[torch.Tensor, ...]",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the runner's product and a manifest into `directory` (created; must be empty)."""
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise InputError(f"{directory} is not empty", hint="export into a new or empty directory")
    directory.mkdir(parents=True, exist_ok=True)
    files = runner.save(directory)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "recipe": recipe.to_dict(),
        "files": files,
        "input_names": input_names,
        "output_names": output_names,
        "inputs": [{"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")} for t in example_inputs],
        "runner_info": runner.info(),
        **(extra or {}),
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    return directory


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise InputError(f"{directory} has no {MANIFEST}", hint="point at a directory written by `hone optimize --export`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise InputError(f"{path} is not a hone artifact of version {VERSION}")
    return manifest


def load(directory: str | Path, *, threads: int | None = None, device: str = "cpu") -> "Runner":
    """The saved candidate, ready to call with inputs in `manifest["input_names"]` order."""
    import tempfile

    import torch

    from hone.plugin import BuildContext
    from hone.registry import RUNTIMES

    directory = Path(directory)
    manifest = read_manifest(directory)
    step = manifest["recipe"]["runtime"]
    runtime = RUNTIMES.get(step["name"])
    config = runtime.Config.from_dict(step["config"])
    # Example inputs of the saved shapes (ones: valid token ids and attention masks) for the
    # runtimes that compile on a first call.
    examples = tuple(torch.ones(i["shape"], dtype=getattr(torch, i["dtype"]), device=device) for i in manifest["inputs"])
    ctx = BuildContext(
        examples, manifest["input_names"], manifest["output_names"], Path(tempfile.mkdtemp(prefix="hone-load-")),
        threads or torch.get_num_threads(), device,
    )
    return runtime(config).load(directory, manifest["files"], ctx)
