"""`hf:<arch>`: any transformers architecture, built from its config with random weights.

For speed and fidelity checks, not task accuracy: random weights exercise the same kernels as
trained ones, and nothing is downloaded. Weights are seeded so two loads (for instance the
parent and a worker, or two runs compared on different days) hold the same model.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from hone.errors import InputError
from hone.models.workload import InputSet, Workload
from hone.models._transformers import import_transformers, quiet

DEFAULT_BATCH_SIZES = (1, 8)
SEQ_LEN = 128
DEFAULT_IMAGE_SIZE = 224  # configs without image_size (ResNet, ConvNeXt, ...) are sized for it
SEED = 0

# alias -> transformers config class name; the defaults of each class are the familiar model
# (ResNetConfig() is ResNet-50, BertConfig() is bert-base, GPT2Config() is the 124M GPT-2).
ALIASES = {
    "resnet-50": "ResNetConfig",
    "resnet50": "ResNetConfig",
    "resnet": "ResNetConfig",
    "vit": "ViTConfig",
    "bert": "BertConfig",
    "gpt2": "GPT2Config",
}


def _make_config(transformers, arch: str, overrides: dict[str, Any]):
    key = arch.lower()
    if key in ALIASES:
        return getattr(transformers, ALIASES[key])(**overrides)
    try:
        return transformers.AutoConfig.for_model(key, **overrides)
    except ValueError:
        # transformers' own message lists every model type (hundreds): too long for one line
        raise InputError(
            f"unknown transformers architecture {arch!r}",
            hint=f"aliases: {', '.join(ALIASES)}; or any transformers model_type (distilbert, convnext, ...)",
        ) from None


def _image_size(config) -> tuple[int, int]:
    size = getattr(config, "image_size", None) or DEFAULT_IMAGE_SIZE
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[-1])
    return int(size), int(size)


def _example_inputs(config, model: torch.nn.Module, batch: int) -> tuple[dict[str, torch.Tensor], str]:
    """Inputs for the largest batch (smaller sets slice it) and the task name."""
    generator = torch.Generator().manual_seed(SEED)
    if hasattr(config, "num_channels"):
        height, width = _image_size(config)
        pixels = torch.randn(batch, config.num_channels, height, width, generator=generator)
        return {"pixel_values": pixels}, "image-feature-extraction"
    if getattr(config, "vocab_size", None):
        # tiny test configs may allow fewer positions than SEQ_LEN
        max_positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        seq_len = min(SEQ_LEN, max_positions) if max_positions else SEQ_LEN
        inputs = {"input_ids": torch.randint(0, config.vocab_size, (batch, seq_len), generator=generator)}
        if "attention_mask" in inspect.signature(model.forward).parameters:
            inputs["attention_mask"] = torch.ones(batch, seq_len, dtype=torch.int64)
        return inputs, "text-feature-extraction"
    raise InputError(
        f"hf:{config.model_type}: no image or text input to generate for this architecture",
        hint="hf: supports vision (num_channels) and text (vocab_size) models; use a file.py:factory for others",
    )


def load_hf(
    arch: str, batch_sizes: tuple[int, ...] | None = None, config_overrides: dict[str, Any] | None = None
) -> Workload:
    """Build `arch` with random seeded weights. `config_overrides` (config kwargs) keeps tests small."""
    if not arch:
        raise InputError("hf: needs an architecture", hint=f"e.g. hf:resnet-50; aliases: {', '.join(ALIASES)}")
    transformers = import_transformers()
    config = _make_config(transformers, arch, dict(config_overrides or {}))
    if hasattr(config, "use_cache"):
        config.use_cache = False  # a KV cache in the outputs is not a tensor we can compare
    torch.manual_seed(SEED)
    try:
        with quiet(transformers):
            model = transformers.AutoModel.from_config(config)
    except ValueError as exc:
        raise InputError(f"hf:{arch}: transformers cannot build a base model: {exc}") from None
    model.eval()
    batch_sizes = batch_sizes or DEFAULT_BATCH_SIZES
    largest, task = _example_inputs(config, model, max(batch_sizes))
    input_sets = [InputSet(f"bs{b}", {k: v[:b].clone() for k, v in largest.items()}) for b in batch_sizes]
    params = sum(p.numel() for p in model.parameters())
    return Workload(
        name=f"hf:{arch}",
        module=model,
        input_sets=input_sets,
        eval=None,
        source=f"hf:{arch}",
        task=task,
        description=f"transformers {type(model).__name__} ({params / 1e6:.1f}M params), random weights",
    )
