"""Example inputs for a model file that brings none (an ONNX graph, a TorchScript archive).

The values only have to be valid for the model: hone compares every candidate with the
baseline on the same inputs, so they need not be realistic, but an index out of range or a
mask of zeros would make a model raise or return NaN. Floats are standard normal (seeded),
masks are ones, token type ids zeros, position ids 0..n-1, and other integers small token
ids: below `high` (the rows of the embedding table they index, where the loader knows it).
"""

from __future__ import annotations

import torch

SEED = 0
DEFAULT_DYNAMIC_DIM = 128  # a dynamic dimension other than the batch: a sequence of 128 tokens
TOKEN_ID_HIGH = 100  # integer inputs are drawn from [0, this), or fewer where a table is smaller


def example_tensor(name: str, shape: tuple[int, ...], dtype: torch.dtype, high: int | None = None,
                   seed: int = SEED, generator: torch.Generator | None = None) -> torch.Tensor:
    """A valid value for input `name` of `shape` and `dtype`; `generator` (else one seeded with
    `seed`) draws the random values, so several inputs can come from one stream."""
    generator = generator if generator is not None else torch.Generator().manual_seed(seed)
    shape = tuple(shape)
    lowered = name.lower()
    if dtype == torch.bool:
        return torch.ones(shape, dtype=dtype)
    if dtype.is_floating_point or dtype.is_complex:
        return torch.randn(shape, generator=generator).to(dtype)
    if "mask" in lowered:
        return torch.ones(shape, dtype=dtype)
    if "token_type" in lowered or "segment" in lowered:
        return torch.zeros(shape, dtype=dtype)
    if "position" in lowered and len(shape) >= 1:
        return torch.arange(shape[-1], dtype=dtype).expand(shape).clone()
    return torch.randint(0, max(1, min(high or TOKEN_ID_HIGH, TOKEN_ID_HIGH)), shape, generator=generator, dtype=dtype)


def default_dtype(name: str) -> torch.dtype:
    """For a format that records no input dtypes (TorchScript): int64 for token ids and masks,
    as transformers name them (input_ids, attention_mask, token_type_ids), else float32."""
    lowered = name.lower()
    if lowered.endswith("ids") or "mask" in lowered:
        return torch.int64
    return torch.float32
