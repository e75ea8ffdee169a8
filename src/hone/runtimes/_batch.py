"""What the shape-flexible runtimes (TorchScript traces, AOTInductor packages) share: a second
batch size built from the example inputs, the check that a built artifact still matches eager
there, and one-line failure reasons that read the same in every process."""

from __future__ import annotations

import re
from typing import Callable

import torch

from hone.models.workload import normalize_outputs
from hone.validate.compare import compare_output

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # "<function f at 0x7f...>": differs per process


def another_batch(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The example inputs at batch N+1, rows repeated cyclically: integer inputs (token ids,
    attention masks) stay valid values, which random data would not."""
    n = int(inputs[0].shape[0])
    rows = torch.arange(n + 1, device=inputs[0].device) % n
    return tuple(t.index_select(0, rows) for t in inputs)


def check_at_another_batch(
    run: Callable[..., tuple[torch.Tensor, ...]],
    eager: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    output_names: list[str],
    compute_dtype: str,
) -> tuple[bool | None, str]:
    """Run `run` and `eager` at batch N+1 and compare with the validation tolerances.
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
    for name, actual, reference in zip(output_names, got, expected):
        if actual.shape != reference.shape:
            return False, (f"output {name!r} at batch {batch} has shape {list(actual.shape)}, eager "
                           f"{list(reference.shape)}: shapes were specialised")
        check = compare_output(name, actual, reference, compute_dtype)
        if not check.passed:
            return False, (f"outputs at batch {batch} differ from eager by {check.max_abs_err:.3g} "
                           f"({name!r}, atol {check.atol:.3g}): control flow or shapes were specialised")
        worst = max(worst, check.max_abs_err)
    return True, f"matches eager at batch {batch} (max abs err {worst:.3g})"


def first_line(exc: BaseException) -> str:
    """The exception's first line, without object addresses: the same failure at two input
    sets must read the same (the report folds identical reasons)."""
    text = str(exc).strip()
    line = _ADDRESS.sub("", next((part.strip() for part in text.splitlines() if part.strip()), ""))
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


