"""torch.export with one symbolic batch dimension, shared by the runtimes that save or compile
an exported program (AOTInductor packages, the torch.export programs eager and compiled
candidates are saved as)."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch

from hone.errors import Unsupported
from hone.validate.batch_axes import another_batch

log = logging.getLogger(__name__)


def batch_dynamic_shapes(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[tuple[torch.Tensor, ...], Any]:
    """Inputs to trace and the `dynamic_shapes` spec that make dim 0 of every input one symbolic
    batch, for torch.export and the ONNX exporter alike. They specialise sizes 0 and 1, so a
    batch-1 example is traced at batch 2."""
    sample = inputs if int(inputs[0].shape[0]) >= 2 else another_batch(inputs)
    batch = torch.export.Dim("batch", min=1)
    specs: Any = tuple({0: batch} for _ in inputs)
    if _takes_var_positional(module):  # FlatIO.forward(*args): one entry, a tuple, for `args`
        specs = (specs,)
    return sample, specs


def export_program(
    module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], dynamic_batch: bool
) -> tuple["torch.export.ExportedProgram", dict[str, Any]]:
    """torch.export with dim 0 of every input one symbolic batch (when asked), else at the
    example's shapes. Returns the program and the batch facts: dynamic or not, its range
    (max None: unbounded), and why it is static when the dynamic export failed."""
    static_reason = None
    if dynamic_batch:
        sample, specs = batch_dynamic_shapes(module, inputs)
        try:
            exported = torch.export.export(module, sample, dynamic_shapes=specs)
        except Exception as exc:  # the model's code fixes the batch: export it at the example's
            static_reason = export_failure(exc)
            log.warning("the batch cannot be dynamic, exporting at batch %d: %s", int(inputs[0].shape[0]),
                        static_reason)
        else:
            return exported, {"dynamic_batch": True, "batch_range": _batch_range(exported)}
    try:
        exported = torch.export.export(module, inputs)
    except Exception as exc:
        raise Unsupported(f"torch.export failed: {export_failure(exc)}") from exc
    n = int(inputs[0].shape[0])
    facts: dict[str, Any] = {"dynamic_batch": False, "batch_range": [n, n]}
    if static_reason:
        facts["static_batch_reason"] = static_reason
    return exported, facts


def _batch_range(exported: "torch.export.ExportedProgram") -> list[int | None]:
    """The range the exporter settled on for the first input's dim 0, read from the program."""
    first = next(n for n in exported.graph.nodes if n.op == "placeholder" and n.name in
                 exported.graph_signature.user_inputs)
    size = first.meta["val"].shape[0]
    if isinstance(size, int):
        return [size, size]
    bounds = exported.range_constraints[size.node.expr]
    return [int(bounds.lower), int(bounds.upper) if bounds.upper.is_Integer else None]  # int_oo: unbounded


def _takes_var_positional(module: torch.nn.Module) -> bool:
    parameters = inspect.signature(module.forward).parameters.values()
    return any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)


def export_failure(exc: BaseException) -> str:
    """One line from torch.export's multi-line error: its first line, the violated constraint
    ("- Not all values of batch ..."), and the user code that raised, when it names them."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    parts = [f"{type(exc).__name__}: {lines[0].split(' For more information')[0]}"]
    detail = next((line for line in lines[1:] if line.startswith("- ")), None)
    if detail:
        parts.append(detail[2:])
    marker = "The following call raised this error:"
    if marker in lines and lines.index(marker) + 2 < len(lines):
        at = lines.index(marker)
        parts.append(f"at {lines[at + 1]}: {lines[at + 2]}")
    return "; ".join(parts)
