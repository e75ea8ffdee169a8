"""What the shape-flexible runtimes (TorchScript traces, AOTInductor packages) share: a second
batch size built from the example inputs, the check that a built artifact still matches eager
there, one-line failure reasons that read the same in every process, and the short form of a
note for a runner's summary()."""

from __future__ import annotations

from typing import Callable

import torch

from hone.models.workload import normalize_outputs
from hone.plugin import first_line
from hone.validate.batch_axes import BatchAxis, another_batch
from hone.validate.compare import compare_output

__all__ = ["check_at_another_batch", "first_line", "shorten"]


def shorten(text: str, limit: int) -> str:
    """One line of at most `limit` characters (a reason may hold a newline or a traceback
    fragment), cut with an ellipsis: how a runner's summary() quotes a reason."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def check_at_another_batch(
    run: Callable[..., tuple[torch.Tensor, ...]],
    eager: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    output_names: list[str],
    compute_dtype: str,
    batch_axes: list[BatchAxis] | None = None,
) -> tuple[bool | None, str]:
    """Run `run` and `eager` at batch N+1 and compare with the validation tolerances, whole
    (an output's batch axis need not be dim 0; `batch_axes` only names it in the message).
    Returns (True, what matched), (False, what differed) or (None, why it could not be checked:
    eager itself does not take batch N+1)."""
    grown = another_batch(inputs)
    batch = int(grown[0].shape[0])
    with torch.inference_mode():
        try:
            want = normalize_outputs(eager(*grown))
        except Exception as exc:
            return None, f"not checked: eager raised at batch {batch}: {first_line(exc)}"
        try:
            got = run(*grown)
        except Exception as exc:
            return False, f"raised at batch {batch}, where eager runs: {first_line(exc)}"
    expected = list(want.values())
    if len(got) != len(expected):
        return False, f"returned {len(got)} outputs at batch {batch}, eager {len(expected)}"
    worst = 0.0
    axes = list(batch_axes or [0] * len(expected))
    for name, actual, reference, axis in zip(output_names, got, expected, axes):
        if actual.shape != reference.shape:
            where = f" (batch axis {axis})" if axis not in (None, 0) else ""
            return False, (f"output {name!r}{where} at batch {batch} has shape {list(actual.shape)}, eager "
                           f"{list(reference.shape)}: shapes were specialised")
        check = compare_output(name, actual, reference, compute_dtype)
        if not check.passed:
            return False, (f"outputs at batch {batch} differ from eager by {check.max_abs_err:.3g} "
                           f"({name!r}, atol {check.atol:.3g}): control flow or shapes were specialised")
        worst = max(worst, check.max_abs_err)
    return True, f"matches eager at batch {batch} (max abs err {worst:.3g})"
