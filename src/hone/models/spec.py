"""Model specs: the one string that names a model on the command line and in the store.

    minilm | digits-cnn          built-ins (real weights)
    hf:<arch>                    a transformers architecture with random weights
    path/to/file.py:function     a user factory returning (model, example_inputs[, eval_set])
    path/to/model.onnx           an ONNX graph (ONNX-consuming recipes only; models.onnx_file)
    path/to/model.jit            a TorchScript archive, also as .pt (models.torchscript_file)
    path/to/program.pt2          a torch.export program (models.pt2_file)
    path/to/folder/              a transformers model folder, safetensors weights (models.hf_folder)
    path/to/model.pt|.pth|.bin   a full pickle: refused, or with --trust-pickle unpickled in a child
                                 process and converted to a .pt2 (models.trusted_pickle)

Loaders are imported on first use, so `import hone.models` imports neither transformers nor
scikit-learn.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from hone.errors import InputError, UnsafeModel
from hone.models.options import LoadOptions, parse_input_shapes
from hone.models.workload import Workload

# name -> one line for listings (`hone optimize --help`, the report)
BUILTINS = {
    "minilm": "sentence-transformers all-MiniLM-L6-v2, real weights; metric: cosine to fp32 embeddings",
    "digits-cnn": "small CNN trained on scikit-learn digits; metric: held-out top-1",
}
_BUILTIN_LOADERS = {
    "minilm": "hone.models.minilm:load_minilm",
    "digits-cnn": "hone.models.digits:load_digits_cnn",
}
UNKNOWN_HINT = ("built-ins: minilm, digits-cnn; or hf:<arch> (resnet-50, vit, bert, gpt2, ...), path/to/file.py:factory, "
                "model.onnx, program.pt2, model.jit, or a transformers model folder")
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle")
TORCHSCRIPT_SUFFIXES = (".jit", ".torchscript")  # and a .pt / .pth whose zip is a TorchScript archive


def load_model(spec: str, *, batch_sizes: tuple[int, ...] | None = None,
               input_shapes: "Mapping[str, Sequence[int]] | Sequence[str] | None" = None,
               trust_pickle: bool = False, timeout_s: float | None = None) -> Workload:
    """Load the model a spec names, as a CPU module in eval mode with named example inputs.

    `batch_sizes` picks the example input sets (one per size, labelled "bs<B>"); None takes the
    source's defaults. It does not apply to a factory, whose example inputs fix the batch size.
    `input_shapes` (name -> shape, or "name=1x128" strings) fixes what a model file leaves
    dynamic; `trust_pickle` is the explicit opt-in to a full pickle (see hone.models.options).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError("empty model spec", hint=UNKNOWN_HINT)
    spec = spec.strip()
    options = LoadOptions(_check_batch_sizes(batch_sizes), parse_input_shapes(input_shapes), bool(trust_pickle), timeout_s)
    workload = _dispatch(spec, options)
    workload.source = spec
    return workload


def _dispatch(spec: str, options: LoadOptions) -> Workload:
    sizes = options.batch_sizes
    if spec.lower() in _BUILTIN_LOADERS:
        module, _, function = _BUILTIN_LOADERS[spec.lower()].partition(":")
        return getattr(importlib.import_module(module), function)(sizes)
    if spec.startswith("hf:"):
        from hone.models.hf import load_hf

        return load_hf(spec[len("hf:"):].strip(), sizes)
    if Path(spec).expanduser().is_dir():
        from hone.models.hf_folder import is_model_folder, load_hf_folder

        if not is_model_folder(Path(spec).expanduser()):
            raise InputError(f"{spec}: a folder without config.json, not a transformers model folder", hint=UNKNOWN_HINT)
        return load_hf_folder(spec, options)
    # A file path, perhaps followed by ":function" (only .py files may carry one; the factory
    # loader says so for other files).
    head, sep, tail = spec.rpartition(":")
    has_function = bool(sep) and tail.isidentifier() and bool(_suffix(head))
    path = head if has_function else spec
    suffix = _suffix(path)
    if not has_function and suffix == ".onnx":
        from hone.models.onnx_file import load_onnx

        return load_onnx(path, options)
    if not has_function and (suffix in TORCHSCRIPT_SUFFIXES or suffix in PICKLE_SUFFIXES and _is_torchscript(path)):
        from hone.models.torchscript_file import load_torchscript

        return load_torchscript(path, options)
    if suffix in PICKLE_SUFFIXES:
        if not options.trust_pickle:
            raise UnsafeModel(
                f"{path}: a pickle file; hone does not load pickles (unpickling runs arbitrary code)",
                hint="save a torch.export .pt2 or build the model in a file.py:factory; or, if you trust the "
                "file, pass --trust-pickle (it is unpickled in a throwaway child process, and the run records it)",
            )
        from hone.models.trusted_pickle import load_trusted_pickle

        return load_trusted_pickle(path, options)
    if not has_function and suffix == ".pt2":
        from hone.models.pt2_file import load_pt2

        return load_pt2(path, options)
    if suffix == ".py" or has_function:
        from hone.models.factory import load_factory

        return load_factory(spec, sizes, options.timeout_s)
    raise InputError(f"unknown model {spec!r}", hint=UNKNOWN_HINT)


def _is_torchscript(path: str) -> bool:
    """A .pt that torch.jit.save wrote (a zip of code and tensors, no pickle): told by its entries."""
    from hone.models.torchscript_file import is_torchscript_archive

    return is_torchscript_archive(path)


def _suffix(path: str) -> str:
    name = path.replace("\\", "/").rsplit("/", 1)[-1].lower()
    return "." + name.rsplit(".", 1)[-1] if "." in name else ""


def _check_batch_sizes(batch_sizes: Sequence[int] | None) -> tuple[int, ...] | None:
    if batch_sizes is None:
        return None
    if isinstance(batch_sizes, (str, bytes)) or not isinstance(batch_sizes, Sequence):
        raise InputError(f"batch sizes must be a sequence of positive ints, not {type(batch_sizes).__name__}")
    sizes = tuple(batch_sizes)
    if not sizes:
        raise InputError("batch sizes: at least one is needed")
    for size in sizes:
        # bool is an int subclass; True as a batch size is a bug, not a 1
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise InputError(f"batch sizes must be positive ints, got {size!r}")
    if len(set(sizes)) != len(sizes):
        raise InputError(f"batch sizes contain duplicates: {list(sizes)}")
    return sizes
