"""torch -> ONNX with the dynamo exporter (torch.export based; the TorchScript exporter is
deprecated). The graph keeps hone's input and output names."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import re
from typing import TYPE_CHECKING

from hone.config import Config
from hone.errors import InputError, Unsupported
from hone.passes.base import Pass
from hone.plugin import Artifact, BuildContext, Variant
from hone.runtimes._export import batch_dynamic_shapes  # the same symbolic batch as torch.export's

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

MIN_OPSET = 18  # the dynamo exporter's lowest supported opset
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# torch.export's report names the user's line that could not be traced.
_USER_LINE = re.compile(r'following call raised this error:\s+File "([^"]+)", line (\d+), in \w+\s+(.+)')
# Warns about every torchvision op it cannot register; noise for a model that uses none.
_NOISY_LOGGER = "torch.onnx._internal.exporter._registration"


def export_failure_reason(exc: BaseException) -> str:
    """One line: the root cause and, when torch.export names it, the line of the model at fault."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = _ANSI.sub("", str(root)).strip()
    first = text.splitlines()[0] if text else ""
    reason = f"ONNX export failed: {type(root).__name__}: {first}"
    where = _USER_LINE.search(_ANSI.sub("", str(exc)))
    if where:
        path, line, code = where.groups()
        reason += f" (at {path.rsplit('/', 1)[-1]}:{line}: {code.strip()})"
    return reason


@dataclasses.dataclass(frozen=True)
class OnnxExportConfig(Config):
    opset: int = 18
    optimize: bool = True  # onnxscript's graph optimizer (constant folding, dead code)
    # Dim 0 of every input one symbolic batch, so one graph (and one ONNX Runtime session)
    # serves every batch size; a model whose code fixes the batch is exported at the example's,
    # noted. On MiniLM the two graphs time within 2 % of each other under ONNX Runtime (fp32 and
    # static int8, batch 1 and 8). False: one static export per input set (a rebuild per shape).
    dynamic_batch: bool = True

    def validate(self) -> None:
        if self.opset < MIN_OPSET:
            raise InputError(f"opset {self.opset} is below the dynamo exporter's minimum {MIN_OPSET}")


class OnnxExport(Pass[OnnxExportConfig]):
    name = "onnx_export"
    Config = OnnxExportConfig
    description = "export to ONNX with torch.onnx.export(dynamo=True)"
    requires = ("onnx", "onnxscript")
    stage = "convert"
    produces = "onnx"
    keeps = ()  # an ONNX graph carries no torch memory format
    devices = ("cpu", "cuda")  # the export itself runs on CPU; the ONNX file serves any provider

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        # A converter adds nothing to a recipe's label or origin: the steps around it say what it is for.
        return [Variant(OnnxExportConfig(), "", "", cost=0.5)]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        cfg = self.config
        path = ctx.workdir / "model.onnx"
        log = io.StringIO()
        noisy = logging.getLogger(_NOISY_LOGGER)
        level = noisy.level
        noisy.setLevel(logging.ERROR)
        inputs = tuple(t.cpu() for t in ctx.example_inputs)  # a CUDA worker's inputs live on the GPU
        notes: dict = {"onnx_opset": cfg.opset, "dynamic_batch": False}
        try:
            if cfg.dynamic_batch:
                try:
                    self._export(model.module, *batch_dynamic_shapes(model.module, inputs), path, ctx, cfg, log)
                    notes["dynamic_batch"] = True
                except Exception as exc:  # the model's code fixes the batch: export it at the example's
                    notes["static_batch_reason"] = export_failure_reason(exc)
            if not notes["dynamic_batch"]:
                self._export(model.module, inputs, None, path, ctx, cfg, log)
        except Exception as exc:  # the exporter raises many types; all mean "cannot export this"
            raise Unsupported(export_failure_reason(exc)) from exc
        finally:
            noisy.setLevel(level)
        notes["onnx_bytes"] = path.stat().st_size
        # The torch module goes along: quantization passes name layers as in it (passes/onnx/layers.py).
        return Artifact("onnx", module=model.module, path=path, compute_dtype=model.compute_dtype, notes=notes)

    @staticmethod
    def _export(module, inputs, dynamic_shapes, path, ctx: BuildContext, cfg: OnnxExportConfig, log) -> None:
        import torch

        # The exporter prints progress lines to stdout; they would garble the progress display.
        with contextlib.redirect_stdout(log):
            torch.onnx.export(
                module.cpu().eval(),
                inputs,
                str(path),
                input_names=ctx.input_names,
                output_names=ctx.output_names,
                opset_version=cfg.opset,
                dynamo=True,
                optimize=cfg.optimize,
                verbose=False,
                dynamic_shapes=dynamic_shapes,
            )
