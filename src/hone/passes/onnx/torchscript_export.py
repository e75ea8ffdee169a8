"""TorchScript -> ONNX with torch's TorchScript exporter (`torch.onnx.export(dynamo=False)`).

The dynamo exporter (passes/onnx/export.py) captures through torch.export, which cannot capture
a ScriptModule; the older exporter reads TorchScript graphs, control flow included. It cannot
export a script that returns a dict (prim::DictConstruct), so the module is first traced behind
FlatIO's flat I/O: the trace calls the script (its control flow kept inside) and indexes its
outputs by name, which the exporter takes. Dim 0 of every input is exported symbolic, so one
graph serves every batch size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import warnings
from typing import TYPE_CHECKING

from hone.config import Config
from hone.errors import InputError, Unsupported
from hone.passes.base import Pass
from hone.passes.onnx.export import export_failure_reason
from hone.plugin import Artifact, BuildContext, Variant

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

MIN_OPSET, MAX_OPSET = 9, 20  # what the TorchScript exporter of torch 2.x writes


@dataclasses.dataclass(frozen=True)
class TorchScriptOnnxExportConfig(Config):
    opset: int = 17
    dynamic_batch: bool = True  # dim 0 of every input symbolic (False: the example's batch)

    def validate(self) -> None:
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise InputError(f"the TorchScript exporter writes opsets {MIN_OPSET} to {MAX_OPSET}, not {self.opset}")


class TorchScriptOnnxExport(Pass[TorchScriptOnnxExportConfig]):
    name = "torchscript_onnx_export"
    Config = TorchScriptOnnxExportConfig
    description = "export a TorchScript module to ONNX with torch.onnx.export(dynamo=False)"
    requires = ("onnx",)
    stage = "convert"
    consumes = ("torchscript",)
    produces = "onnx"
    keeps = ()  # an ONNX graph carries no torch memory format
    devices = ("cpu", "cuda")  # the export runs on CPU; the file serves any provider

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torchscript") -> list[Variant]:
        # A converter adds nothing to a recipe's label or origin: the steps around it say what it is for.
        return [Variant(TorchScriptOnnxExportConfig(), "", "", cost=0.5)]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        import torch

        cfg = self.config
        path = ctx.workdir / "model.onnx"
        inputs = tuple(t.cpu() for t in ctx.example_inputs)
        dynamic = {name: {0: "batch"} for name in ctx.input_names} if cfg.dynamic_batch else None
        # Both steps warn at length (every traced Python value, the exporter's deprecation) and
        # print to stdout: either would garble the progress display.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")
            try:
                traced = torch.jit.trace(model.module.cpu().eval(), inputs, check_trace=False, strict=False)
                torch.onnx.export(traced, inputs, str(path), input_names=ctx.input_names, output_names=ctx.output_names,
                                  opset_version=cfg.opset, dynamo=False, dynamic_axes=dynamic)
            except Exception as exc:  # the tracer and the exporter raise many types; all mean "cannot export this"
                raise Unsupported(export_failure_reason(exc)) from exc
        notes = {"onnx_opset": cfg.opset, "exporter": "torchscript", "dynamic_batch": cfg.dynamic_batch,
                 "onnx_bytes": path.stat().st_size}
        return Artifact("onnx", path=path, compute_dtype=model.compute_dtype, notes=notes)
