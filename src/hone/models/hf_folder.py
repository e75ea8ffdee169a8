"""A transformers model folder (what save_pretrained writes): config.json plus *.safetensors.

Loaded offline (local_files_only) and never with the folder's own code: a config or tokenizer
config with `auto_map` (the hook trust_remote_code would follow) is refused as UnsafeModel.
The model is the architecture's base model (AutoModel: a BertForSequenceClassification
checkpoint loads as BertModel, its head left out) in float32, and its outputs are flattened
like hf:<arch>'s (use_cache off, so no KV cache among them).

Inputs: text models tokenize built-in sentences with the folder's tokenizer when it has one
(else random token ids below vocab_size); image models take random pixel_values of the
config's num_channels and image_size. --input-shape sets the text length (any text input's
dim 1) or the image shape; --batch-sizes the batches.

Weights that are only pytorch_model*.bin pickles need --trust-pickle, and even then are
unpickled only in a throwaway child process that re-saves them as safetensors
(hone.models.trusted_pickle); the run records that.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from hone.errors import InputError, UnsafeModel
from hone.models import hf
from hone.models.options import SHAPE_HINT, LoadOptions
from hone.models.workload import InputSet, Workload
from hone.models._transformers import import_transformers, quiet

# Files through which transformers would import code from the folder (their `auto_map`).
CODE_MAP_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json",
                  "feature_extractor_config.json", "image_processor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "tokenizer.model",
                   "sentencepiece.bpe.model")
PICKLED_WEIGHTS = "pytorch_model*.bin"
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def is_model_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def load_hf_folder(path_text: str, options: LoadOptions) -> Workload:
    folder = Path(path_text).expanduser().resolve()
    refuse_remote_code(folder)
    pickled = _pickled_weights_only(folder, options.trust_pickle)
    transformers = import_transformers()
    config = _config(transformers, folder)
    if hasattr(config, "use_cache"):
        config.use_cache = False  # a KV cache in the outputs is not a tensor we can compare
    provenance: dict[str, Any] = {"format": "transformers-folder", "weights": "safetensors"}
    with tempfile.TemporaryDirectory(prefix="hone-weights-") as converted:
        weights_folder = folder
        if pickled:
            from hone.models.trusted_pickle import convert_hf_weights

            weights_folder = convert_hf_weights(folder, Path(converted))
            provenance.update(
                weights=f"{', '.join(p.name for p in pickled)} (pickle), unpickled in a child process and "
                "re-saved as safetensors", trust_pickle=True,
                sha256={p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in pickled})
        model = _model(transformers, weights_folder, config)
    tokenizer = _tokenizer(transformers, folder, provenance) if not hasattr(config, "num_channels") else None
    given = dict(options.input_shapes)
    batch_sizes = options.batch_sizes or _given_batch(given) or hf.DEFAULT_BATCH_SIZES
    largest, task, how = _example_inputs(config, model, tokenizer, max(batch_sizes), given, folder.name)
    input_sets = [InputSet(f"bs{b}", {k: v[:b].clone() for k, v in largest.items()}) for b in batch_sizes]
    calibration = _calibration(tokenizer, largest) if tokenizer is not None else None
    params = sum(p.numel() for p in model.parameters())
    architecture = (getattr(config, "architectures", None) or [type(model).__name__])[0]
    provenance.update(model_class=type(model).__name__, architecture=architecture, inputs=how)
    if given:
        provenance["input_shapes"] = {n: list(s) for n, s in given.items()}
    head = "" if architecture == type(model).__name__ else f", the base model of {architecture} (its head left out)"
    return Workload(
        name=folder.name,
        module=model,
        input_sets=input_sets,
        task=task,
        description=f"transformers {type(model).__name__} ({params / 1e6:.1f}M params) from {folder.name}{head}",
        calibration=calibration,
        calibration_description="" if calibration is None else
        f"{len(_calibration_sentences())} built-in sentences through the folder's tokenizer",
        provenance=provenance,
    )


def refuse_remote_code(folder: Path) -> None:
    """UnsafeModel when transformers would import Python from the folder (trust_remote_code)."""
    for name in CODE_MAP_FILES:
        data = _read_json(folder / name) if (folder / name).is_file() else {}
        if isinstance(data, dict) and data.get("auto_map"):
            code = sorted(p.name for p in folder.glob("*.py"))
            raise UnsafeModel(
                f"{folder}: {name} maps the model to code in the folder (auto_map{': ' + ', '.join(code) if code else ''}); "
                "hone never runs a model folder's own code",
                hint="use a model type transformers has built in, or a file.py:factory that builds it from code you trust",
            )


def _pickled_weights_only(folder: Path, trust_pickle: bool) -> list[Path]:
    """The pickled weight files when they are the only weights ([] when safetensors exist)."""
    if any(folder.glob("*.safetensors")):
        return []
    pickled = sorted(folder.glob(PICKLED_WEIGHTS))
    if not pickled:
        raise InputError(f"{folder}: no *.safetensors weights in the folder",
                         hint="save the model with save_pretrained(folder) (safetensors by default)")
    if not trust_pickle:
        raise UnsafeModel(
            f"{folder}: its weights are pickles only ({', '.join(p.name for p in pickled)}); unpickling runs arbitrary code",
            hint="re-save them as safetensors (save_pretrained) where you trust them, or pass --trust-pickle: "
            "hone then unpickles them in a throwaway child process and records the opt-in",
        )
    return pickled


def _config(transformers, folder: Path):
    try:
        return transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (ValueError, KeyError) as exc:
        model_type = _read_json(folder / "config.json").get("model_type")
        if any(folder.glob("*.py")):
            raise UnsafeModel(f"{folder}: model type {model_type!r} is not built into transformers and the folder "
                              "carries its own code; hone never runs it",
                              hint="use a model type transformers has built in, or a file.py:factory") from None
        raise InputError(f"{folder}: transformers cannot read config.json (model type {model_type!r}): "
                         f"{str(exc).splitlines()[0][:200]}", hint="upgrade transformers, or use a file.py:factory") from None


def _model(transformers, weights_folder: Path, config):
    from safetensors import SafetensorError

    from hone.models._safetensors_safety import check_safetensors

    for weights in sorted(weights_folder.glob("*.safetensors")):
        check_safetensors(weights)  # before transformers reads what a header claims
    try:
        with quiet(transformers):
            model = transformers.AutoModel.from_pretrained(
                str(weights_folder), config=config, local_files_only=True, trust_remote_code=False,
                use_safetensors=True, dtype=torch.float32)
    except (OSError, ValueError, SafetensorError) as exc:
        raise InputError(f"{weights_folder}: transformers cannot load the model: {str(exc).splitlines()[0][:300]}") from None
    return model.eval()


def _tokenizer(transformers, folder: Path, provenance: dict[str, Any]):
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return None
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # a tokenizer that does not load is worth a warning, not a failed run
        provenance.setdefault("warnings", []).append(
            f"the folder's tokenizer does not load ({type(exc).__name__}: {str(exc)[:200]}); inputs are random token ids")
        return None
    if tokenizer.pad_token is None:  # GPT-2 style: pad with the end-of-text token, masked out anyway
        if tokenizer.eos_token is None:
            provenance.setdefault("warnings", []).append("the folder's tokenizer has no pad token; inputs are random token ids")
            return None
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _given_batch(given: dict[str, tuple[int, ...]]) -> tuple[int, ...] | None:
    batches = {shape[0] for shape in given.values()}
    if len(batches) > 1:
        raise InputError(f"--input-shape gives different batches (dim 0): {sorted(batches)}", hint=SHAPE_HINT)
    return (batches.pop(),) if batches else None


def _example_inputs(config, model, tokenizer, batch: int, given: dict[str, tuple[int, ...]], name: str):
    """Inputs at the largest batch (smaller sets slice them), the task, and how they were made."""
    if hasattr(config, "num_channels"):
        _only(given, ("pixel_values",), name)
        if "pixel_values" not in given:
            inputs, task = hf._example_inputs(config, model, batch)
            return inputs, task, "random pixel_values at the config's image size"
        shape = given["pixel_values"]
        if len(shape) != 4 or shape[1] != config.num_channels:
            raise InputError(f"{name}: pixel_values must be Bx{config.num_channels}xHxW, --input-shape gives "
                             f"{'x'.join(map(str, shape))}", hint=SHAPE_HINT)
        pixels = torch.randn(batch, *shape[1:], generator=torch.Generator().manual_seed(hf.SEED))
        return {"pixel_values": pixels}, "image-feature-extraction", "random pixel_values of the --input-shape"
    if not getattr(config, "vocab_size", None):
        raise InputError(f"{name}: no image or text input to make for a {config.model_type} model",
                         hint="transformers folders of vision (num_channels) and text (vocab_size) models load; "
                         "use a file.py:factory for others")
    _only(given, TEXT_INPUTS, name)
    seq_len = _seq_len(config, tokenizer, given, name)
    if tokenizer is not None:
        return _tokenized(tokenizer, model, _sentences(batch), seq_len), "text-feature-extraction", \
            f"{batch} built-in sentences through the folder's tokenizer, padded to {seq_len} tokens"
    generator = torch.Generator().manual_seed(hf.SEED)
    inputs = {"input_ids": torch.randint(0, config.vocab_size, (batch, seq_len), generator=generator)}
    if "attention_mask" in inspect.signature(model.forward).parameters:
        inputs["attention_mask"] = torch.ones(batch, seq_len, dtype=torch.int64)
    return inputs, "text-feature-extraction", f"random token ids below vocab_size ({seq_len} tokens; no tokenizer)"


def _only(given: dict[str, tuple[int, ...]], names: tuple[str, ...], name: str) -> None:
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise InputError(f"{name}: --input-shape names {unknown}; this model's inputs are {list(names)}", hint=SHAPE_HINT)


def _seq_len(config, tokenizer, given: dict[str, tuple[int, ...]], name: str) -> int:
    max_positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    lengths = {shape[1] for shape in given.values() if len(shape) == 2}
    if any(len(shape) != 2 for shape in given.values()) or len(lengths) > 1:
        raise InputError(f"{name}: text inputs are BxS with one S, --input-shape gives "
                         f"{ {n: list(s) for n, s in given.items()} }", hint=SHAPE_HINT)
    if lengths:
        length = lengths.pop()
        if max_positions and length > max_positions:
            raise InputError(f"{name}: {length} tokens is more than the model's {max_positions} positions", hint=SHAPE_HINT)
        return length
    limits = [hf.SEQ_LEN, max_positions, getattr(tokenizer, "model_max_length", None)]
    return min(int(n) for n in limits if n)


def _tokenized(tokenizer, model, sentences: list[str], seq_len: int) -> dict[str, torch.Tensor]:
    encoded = tokenizer(sentences, padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt")
    accepted = inspect.signature(model.forward).parameters
    return {k: encoded[k].to(torch.int64) for k in TEXT_INPUTS if k in encoded and k in accepted}


def _calibration(tokenizer, example: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Built-in calibration text (none of it in the example inputs), tokenized like them."""
    seq_len = int(next(iter(example.values())).shape[1])
    encoded = tokenizer(list(_calibration_sentences()), padding="max_length", truncation=True, max_length=seq_len,
                        return_tensors="pt")
    return {k: encoded[k].to(torch.int64) for k in example}


def _sentences(count: int) -> list[str]:
    from hone.models.minilm import SENTENCES

    return [SENTENCES[i % len(SENTENCES)] for i in range(count)]


def _calibration_sentences() -> tuple[str, ...]:
    from hone.models.minilm import CALIBRATION_SENTENCES

    return CALIBRATION_SENTENCES


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not readable JSON ({exc})") from None
    return data if isinstance(data, dict) else {}
