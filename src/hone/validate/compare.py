"""Tensor comparison against the eager fp32 reference, with a tolerance per compute dtype.

Floors are torch.testing.assert_close's defaults for each dtype (DESIGN.md). One departure,
documented in docs/ARCHITECTURE.md: atol is scaled by the reference's largest magnitude
(atol = max(atol_floor, rtol * max|ref|)). A whole network run in bf16 carries bf16's ~3
significant digits relative to the output's scale, not to each element; an unscaled atol of
1e-5 would reject every bf16 candidate on near-zero elements while a real bug (wrong layout,
dropped op) still shows errors of the output's own magnitude and fails.
"""

from __future__ import annotations

import torch

from hone.validate.verdict import OutputCheck

# (rtol, atol) floors by compute dtype: torch.testing.assert_close defaults.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1.3e-6, 1e-5),
    "tf32": (1e-3, 1e-5),
    "bfloat16": (1.6e-2, 1e-5),
    "float16": (1e-3, 1e-5),
}
# Quantized compute has no meaningful elementwise tolerance: the task metric decides.
ADVISORY_DTYPES = {"int8", "int4", "float8", "fp8"}


def tolerance(compute_dtype: str) -> tuple[float, float]:
    return TOLERANCES.get(compute_dtype, TOLERANCES["bfloat16"])


def compare_output(
    name: str,
    actual: torch.Tensor,
    expected: torch.Tensor,
    compute_dtype: str,
    extra_atol: float = 0.0,
) -> OutputCheck:
    """Compare one output. `extra_atol` widens the check by the reference's own run-to-run
    difference when eager fp32 is not deterministic."""
    rtol, atol_floor = tolerance(compute_dtype)
    if actual.shape != expected.shape:
        return OutputCheck(name, float("inf"), float("inf"), float("nan"), atol_floor, rtol, 0, False)
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    nonfinite = int((~torch.isfinite(a) & torch.isfinite(e)).sum())
    if not expected.is_floating_point():  # integer outputs (token ids, argmax): exact match
        equal = bool(torch.equal(a, e))
        return OutputCheck(name, float((a - e).abs().max()) if a.numel() else 0.0, 0.0, 1.0, 0.0, 0.0, 0, equal)
    scale = float(e.abs().max()) if e.numel() else 0.0
    atol = max(atol_floor, rtol * scale) + extra_atol
    diff = (a - e).abs()
    finite = torch.isfinite(diff)
    max_abs = float(diff[finite].max()) if finite.any() else 0.0
    rel = diff / e.abs().clamp_min(1e-12)
    max_rel = float(rel[finite].max()) if finite.any() else 0.0
    cosine = _cosine(a, e)
    within = bool(((diff <= atol + rtol * e.abs()) | (a == e)).all())  # a == e: matching infs
    return OutputCheck(name, max_abs, max_rel, cosine, atol, rtol, nonfinite, within and nonfinite == 0)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten(), b.flatten()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return float("nan")
    denom = a.norm() * b.norm()
    return float((a @ b) / denom) if denom > 0 else float(torch.equal(a, b))


def max_abs_difference(first: tuple[torch.Tensor, ...], second: tuple[torch.Tensor, ...]) -> list[float]:
    """Per-output largest difference between two runs (the determinism check of the reference)."""
    return [float((x.double() - y.double()).abs().max()) if x.numel() else 0.0 for x, y in zip(first, second)]
