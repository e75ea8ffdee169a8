"""What every torch.compile runtime shares: the graph-break report, and compiling on the
example inputs with the compile time measured apart from the rest of the build.

Graph breaks are where Dynamo gives up on a frame and falls back to Python: each splits the
model into separate compiled graphs with eager code between them, which costs fusion and
dispatch. `torch._dynamo.explain` traces the model once with a counting backend (nothing is
compiled) and says how many graphs there are and why each break happened.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from hone.runtimes._batch import shorten
from hone.runtimes.base import ModuleRunner, shapes_of

MAX_REASONS = 5  # a report shows the first few; the count says how many there were
SUMMARY_REASON_CHARS = 120  # how much of the first break's reason a summary quotes


class CompiledRunner(ModuleRunner):
    """A torch.compile'd module: a ModuleRunner whose summary names its graph breaks.

    It serves every batch size (ModuleRunner.serves): a call at a shape not seen yet recompiles.
    Inductor reads some settings (`freezing`) from its global config while it compiles, so such
    a call runs under the same `inductor_config` patch as the build's compile; later calls run
    unpatched, at no cost."""

    def __init__(self, module: torch.nn.Module, device: str = "cpu", info: dict[str, Any] | None = None,
                 example_inputs: tuple[torch.Tensor, ...] | None = None, inductor_config: dict[str, Any] | None = None):
        super().__init__(module, device, info, example_inputs)
        self.inductor_config = dict(inductor_config or {})
        self._compiled_for = {shapes_of(example_inputs)} if example_inputs is not None else set()

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        shapes = shapes_of(inputs)
        if shapes in self._compiled_for or not self.inductor_config:
            return self.module(*inputs)
        import torch._inductor.config

        with torch._inductor.config.patch(**self.inductor_config):
            outputs = self.module(*inputs)
        self._compiled_for.add(shapes)
        return outputs

    def summary(self) -> list[str]:
        return graph_break_summary(self._info)


def graph_break_summary(info: dict[str, Any]) -> list[str]:
    """["graph breaks N (first: reason...)"] from a build's graph_breaks() facts; [] without them."""
    if "graph_break_count" not in info:
        return []
    breaks = info["graph_break_count"]
    reasons = info.get("break_reasons")
    first = f" (first: {shorten(reasons[0], SUMMARY_REASON_CHARS)})" if breaks and reasons else ""
    return [f"graph breaks {breaks}{first}"]


def graph_breaks(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    """{"graph_count", "graph_break_count", "break_reasons": ["file:line: reason", ...]}."""
    import torch._dynamo

    torch._dynamo.reset()
    with torch.inference_mode():
        explained = torch._dynamo.explain(module)(*inputs)
    torch._dynamo.reset()  # the real compile must not reuse explain's cached frames
    reasons = []
    for reason in explained.break_reasons[:MAX_REASONS]:
        where = reason.user_stack[-1] if reason.user_stack else None
        text = _one_line(reason.reason)
        reasons.append(f"{where.filename}:{where.lineno}: {text}" if where else text)
    return {
        "graph_count": int(explained.graph_count),
        "graph_break_count": int(explained.graph_break_count),
        "break_reasons": reasons,
    }


def _one_line(reason: str) -> str:
    """Dynamo's reason is a paragraph: a title ("Failed to trace builtin operator"), then
    "Explanation: ..." naming the culprit, then hints. Title and explanation say what broke."""
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()]
    if not lines:
        return "unknown"
    explanation = next((line.removeprefix("Explanation:").strip() for line in lines if line.startswith("Explanation:")), "")
    return f"{lines[0]}: {explanation}" if explanation else lines[0]


def fullgraph_refusal(breaks: dict[str, Any]) -> str | None:
    """Why fullgraph=True cannot compile this model (it has breaks), else None."""
    if not breaks["graph_break_count"]:
        return None
    first = breaks["break_reasons"][0] if breaks["break_reasons"] else ""
    return f"fullgraph=True, but the model has {breaks['graph_break_count']} graph break(s); first: {first}"


def compile_now(compiled: Callable[..., Any], inputs: tuple[torch.Tensor, ...]) -> float:
    """Run the compiled callable once on the example inputs (which is when torch.compile
    compiles) and return the seconds it took: the cost a user pays once per process."""
    start = time.perf_counter()
    with torch.inference_mode():
        compiled(*inputs)
    if inputs and inputs[0].is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start
