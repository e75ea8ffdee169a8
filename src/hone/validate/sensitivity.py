"""Which layers a quantization scheme hurts most: one layer at a time, against fp32.

For each layer, only that layer is quantized (simulated in float: its weight rounded to the
scheme's grid, its input rounded as the scheme rounds activations) and the whole model runs on
calibration samples; the layer's sensitivity is the relative error of the outputs against the
unquantized model. Simulating rather than building each backend's artifact costs one forward per
layer instead of one build per layer, and ranks the same layers for every backend: the
accuracy-driven fallback keeps the top of this ranking in float, whichever backend quantizes.

Calibration samples only: the eval split that judges accuracy must not also pick the layers.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import torch

from hone.models.workload import FlatIO
from hone.passes.quantize import Scheme, layers

MAX_SAMPLES = 8  # enough to rank (the order, not the value, matters); one forward per layer
FP8_E4M3_MAX = 448.0


@dataclasses.dataclass(frozen=True)
class LayerSensitivity:
    name: str
    error: float  # ||out - ref||^2 / ||ref||^2 over all float outputs, this layer alone quantized

    def to_dict(self) -> dict[str, float | str]:
        return {"name": self.name, "error": self.error}


def rank_layers(
    module: torch.nn.Module,
    samples: tuple[torch.Tensor, ...],
    input_names: list[str],
    output_names: list[str],
    scheme: Scheme,
    layer_types: tuple[str, ...],
    max_samples: int = MAX_SAMPLES,
) -> list[LayerSensitivity]:
    """Layers of `module` (the user's model) from most to least sensitive under `scheme`."""
    flat = FlatIO(module, input_names, output_names).eval()
    inputs = tuple(t[:max_samples] for t in samples)
    found = layers(module, layer_types)
    with torch.no_grad():  # not inference_mode: weights are swapped in and out below
        reference = flat(*inputs)
        ranges = _input_ranges(flat, inputs, found) if scheme.activations == "static" else {}
        ranked = []
        for name, layer in found.items():
            with _quantized(layer, scheme, ranges.get(name)):
                error = _relative_error(flat(*inputs), reference)
            ranked.append(LayerSensitivity(name, error))
    return sorted(ranked, key=lambda s: s.error, reverse=True)


def _relative_error(outputs: tuple[torch.Tensor, ...], reference: tuple[torch.Tensor, ...]) -> float:
    num = den = 0.0
    for out, ref in zip(outputs, reference):
        if not ref.is_floating_point():
            continue
        num += float((out.double() - ref.double()).pow(2).sum())
        den += float(ref.double().pow(2).sum())
    return num / max(den, 1e-30)


def _input_ranges(
    flat: torch.nn.Module, inputs: tuple[torch.Tensor, ...], found: dict[str, torch.nn.Module]
) -> dict[str, tuple[float, float]]:
    """(min, max) of each layer's input over the samples: what a static calibrator would fix."""
    ranges: dict[str, tuple[float, float]] = {}

    def hook(name: str):
        def record(_module, args):
            x = args[0]
            ranges[name] = (float(x.min()), float(x.max()))

        return record

    handles = [layer.register_forward_pre_hook(hook(name)) for name, layer in found.items()]
    try:
        flat(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return ranges


@contextlib.contextmanager
def _quantized(layer: torch.nn.Module, scheme: Scheme, input_range: tuple[float, float] | None) -> Iterator[None]:
    """`layer` quantized under `scheme` for the duration: weight swapped, input hooked."""
    weights = [(n, p) for n, p in layer.named_parameters(recurse=False) if n.startswith("weight") and p.dim() >= 2]
    saved = [(n, p.data) for n, p in weights]
    for _, p in weights:
        p.data = fake_quantize_weight(p.data, scheme)
    handle = None
    if scheme.activations != "none":
        handle = layer.register_forward_pre_hook(
            lambda _m, args: (fake_quantize_activation(args[0], scheme, input_range), *args[1:])
        )
    try:
        yield
    finally:
        for (n, data), (_, p) in zip(saved, weights):
            p.data = data
        if handle is not None:
            handle.remove()


def fake_quantize_weight(w: torch.Tensor, scheme: Scheme) -> torch.Tensor:
    """Round `w` (out, in, ...) to the scheme's grid: symmetric, per channel, tensor or group."""
    rows = w.reshape(w.shape[0], -1)
    group = scheme.weight_group
    if group > 0 and rows.shape[1] % group == 0:
        grouped = rows.reshape(rows.shape[0], -1, group)
        return _round(grouped, grouped.abs().amax(dim=-1, keepdim=True), scheme).reshape(w.shape)
    amax = rows.abs().amax() if group < 0 else rows.abs().amax(dim=1, keepdim=True)
    return _round(rows, amax, scheme).reshape(w.shape)


def fake_quantize_activation(
    x: torch.Tensor, scheme: Scheme, input_range: tuple[float, float] | None
) -> torch.Tensor:
    """Round `x` per tensor: to the calibrated range (static) or this batch's own (dynamic)."""
    if not x.is_floating_point():
        return x
    if scheme.float_format:
        return _round(x, x.abs().amax(), scheme)
    low, high = input_range if input_range is not None else (float(x.min()), float(x.max()))
    low, high = min(low, 0.0), max(high, 0.0)  # zero must be exact (padding, ReLU outputs)
    levels = 2**scheme.activation_bits - 1
    if scheme.activation_symmetric:
        bound = max(-low, high)
        scale = max(2 * bound / levels, 1e-12)
        return (x / scale).round().clamp(-(levels // 2), levels // 2) * scale
    scale = max((high - low) / levels, 1e-12)
    zero = round(-low / scale)
    return ((x / scale).round() + zero).clamp(0, levels).sub(zero) * scale


def _round(x: torch.Tensor, amax: torch.Tensor, scheme: Scheme) -> torch.Tensor:
    amax = torch.as_tensor(amax, dtype=x.dtype).clamp(min=1e-12)
    if scheme.float_format:  # fp8 e4m3: scale so amax lands on the format's largest value
        scale = amax / FP8_E4M3_MAX
        return (x / scale).to(torch.float8_e4m3fn).to(x.dtype) * scale
    q = 2 ** (scheme.weight_bits - 1) - 1
    scale = amax / q
    return (x / scale).round().clamp(-q - 1, q) * scale
