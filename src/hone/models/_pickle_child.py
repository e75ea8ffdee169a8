"""The throwaway process that unpickles a file under --trust-pickle (hone.models.trusted_pickle).

    python -m hone.models._pickle_child request.json

Tasks: "module" (a pickled nn.Module -> torch.export .pt2) and "hf_weights" (a transformers
folder's pytorch_model*.bin -> safetensors). The result, or the HoneError a user can act on,
goes to the request's "result" file as JSON; the parent trusts nothing else from here.
"""

from __future__ import annotations

import inspect
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from hone.atomic import write_atomic
from hone.errors import HoneError, InputError, Unsupported

MODULE_KEYS = ("model", "module")
EXPORT_HINT = "export it yourself (torch.export.save) and give the .pt2, or build it in a file.py:factory"


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[1]).read_text())
    # The pickle names classes by module path: the parent's sys.path finds them as it would.
    sys.path.extend(p for p in request.get("sys_path", []) if p not in sys.path)
    try:
        result = {"ok": True, **TASKS[request["task"]](request)}
    except HoneError as exc:
        result = {"ok": False, "kind": type(exc).__name__, "message": exc.message, "hint": exc.hint,
                  "package": getattr(exc, "package", None)}
    except Exception as exc:
        traceback.print_exc()
        result = {"ok": False, "kind": "crash", "message": f"converting failed: {type(exc).__name__}: {_first_line(exc)}"}
    write_atomic(request["result"], json.dumps(result, default=str))
    return 0


def convert_module(request: dict[str, Any]) -> dict[str, Any]:
    import torch

    obj = _unpickle(Path(request["path"]))
    module, key = _find_module(obj)
    module = module.cpu().eval()
    cls = type(module).__qualname__
    names = _forward_inputs(module, request["input_shapes"])
    from hone.models.pt2_file import SEED, synthetic_tensor

    generator = torch.Generator().manual_seed(SEED)
    dtypes = {n: input_dtype(n) for n in names}
    inputs = tuple(synthetic_tensor(n, request["input_shapes"][n], dtypes[n], generator) for n in names)
    from hone.runtimes._export import export_program

    try:
        with torch.no_grad():
            program, facts = export_program(module, inputs, dynamic_batch=True)
    except Unsupported as exc:
        raise InputError(f"the pickled {cls} does not export: {exc.message}", hint=EXPORT_HINT) from None
    torch.export.save(program, request["out"])
    return {"class": f"{type(module).__module__}.{cls}", "key": key,
            "dtypes": ", ".join(f"{n}: {str(d).removeprefix('torch.')}" for n, d in dtypes.items()), **facts}


def convert_hf_weights(request: dict[str, Any]) -> dict[str, Any]:
    import torch

    from hone.models._transformers import import_transformers, quiet

    transformers = import_transformers()
    folder = request["path"]
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    with quiet(transformers):
        model = transformers.AutoModel.from_pretrained(folder, config=config, local_files_only=True,
                                                       trust_remote_code=False, use_safetensors=False,
                                                       dtype=torch.float32)
        model.save_pretrained(request["out"])
    return {"class": type(model).__name__}


TASKS = {"module": convert_module, "hf_weights": convert_hf_weights}


def input_dtype(name: str) -> Any:
    """int64 for token ids and masks, float32 for everything else (documented in trusted_pickle)."""
    import torch

    lowered = name.lower()
    return torch.int64 if lowered.endswith("ids") or "mask" in lowered else torch.float32


def _unpickle(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as exc:
        raise InputError(f"the pickle needs the module {exc.name!r}, which is not importable here",
                         hint="put the folder of the code that defines the model on PYTHONPATH") from None
    except AttributeError as exc:
        if "__main__" in str(exc):
            raise InputError(f"the pickle refers to a class of the script that saved it ({_first_line(exc)})",
                             hint="define the model class in an importable module, or save a .pt2 with "
                             "torch.export.save instead") from None
        raise InputError(f"torch.load failed: {_first_line(exc)}") from None
    except Exception as exc:
        raise InputError(f"torch.load failed: {type(exc).__name__}: {_first_line(exc)}") from None


def _find_module(obj: Any) -> tuple[Any, str | None]:
    import torch

    if isinstance(obj, torch.jit.ScriptModule):
        raise InputError("a TorchScript module inside a pickle; hone loads TorchScript saved with torch.jit.save")
    if isinstance(obj, torch.nn.Module):
        return obj, None
    if isinstance(obj, dict):
        for key in MODULE_KEYS:
            if isinstance(obj.get(key), torch.nn.Module):
                return obj[key], key
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise InputError("a state dict (weights without the model's code), not a model",
                             hint="build the model in a file.py:factory that loads these weights; for a transformers "
                             "checkpoint, give its folder")
        keys = ", ".join(map(repr, list(obj)[:8]))
        raise InputError(f"a dict without an nn.Module under {' or '.join(map(repr, MODULE_KEYS))} (keys: {keys})",
                         hint="save the module itself, or a dict holding it under 'model'")
    raise InputError(f"the pickle holds a {type(obj).__name__}, not a torch.nn.Module",
                     hint="save the module itself (torch.save(model, path))")


def _forward_inputs(module: Any, shapes: dict[str, list[int]]) -> list[str]:
    """The inputs --input-shape gives, in forward's order; an error naming what to give."""
    signature = inspect.signature(module.forward)
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in signature.parameters.values() if p.kind in kinds]
    names = [p.name for p in positional]
    required = [p.name for p in positional if p.default is inspect.Parameter.empty]
    cls = type(module).__qualname__
    example = " ".join(f"--input-shape {n}=1x..." for n in (required or names[:1]))
    if not names:
        raise InputError(f"{cls}.forward{signature} takes no named inputs to give shapes for", hint=EXPORT_HINT)
    if not shapes:
        raise InputError(f"a pickled {cls} carries no input shapes: give one per input of forward{signature}",
                         hint=f"e.g. {example}; inputs are float32, int64 where the name ends in ids or holds mask")
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise InputError(f"--input-shape names {unknown}; {cls}.forward takes {names}", hint=example)
    last = max(names.index(n) for n in shapes)
    missing = [n for n in names if n not in shapes and (names.index(n) < last or n in required)]
    if missing:
        raise InputError(f"--input-shape misses {missing} of {cls}.forward{signature}",
                         hint="give every required input, and every input before the last one given")
    return names[:last + 1]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main(sys.argv))
