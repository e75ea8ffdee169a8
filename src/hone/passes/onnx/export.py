"""torch -> ONNX with the dynamo exporter (torch.export based; the TorchScript exporter is
deprecated). The graph keeps hone's input and output names."""

from __future__ import annotations

import dataclasses
import io
import contextlib

from hone.config import Config
from hone.errors import InputError, Unsupported
from hone.passes.base import Pass
from hone.plugin import Artifact, BuildContext

MIN_OPSET = 18  # the dynamo exporter's lowest supported opset


@dataclasses.dataclass(frozen=True)
class OnnxExportConfig(Config):
    opset: int = 18
    optimize: bool = True  # onnxscript's graph optimizer (constant folding, dead code)

    def validate(self) -> None:
        if self.opset < MIN_OPSET:
            raise InputError(f"opset {self.opset} is below the dynamo exporter's minimum {MIN_OPSET}")


class OnnxExport(Pass):
    name = "onnx_export"
    Config = OnnxExportConfig
    description = "export to ONNX with torch.onnx.export(dynamo=True)"
    requires = ("onnx", "onnxscript")
    input_format = "torch"
    output_format = "onnx"

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        import torch

        cfg: OnnxExportConfig = self.config  # type: ignore[assignment]
        path = ctx.workdir / "model.onnx"
        log = io.StringIO()
        try:
            # The exporter prints progress lines; keep them for the error message instead.
            with contextlib.redirect_stdout(log):
                torch.onnx.export(
                    model.module.eval(),
                    ctx.example_inputs,
                    str(path),
                    input_names=ctx.input_names,
                    output_names=ctx.output_names,
                    opset_version=cfg.opset,
                    dynamo=True,
                    optimize=cfg.optimize,
                    verbose=False,
                )
        except Exception as exc:  # the exporter raises many types; all mean "cannot export this"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise Unsupported(f"ONNX export failed: {type(exc).__name__}: {first}") from exc
        notes = {**model.notes, "onnx_opset": cfg.opset, "onnx_bytes": path.stat().st_size}
        return Artifact("onnx", path=path, compute_dtype=model.compute_dtype, notes=notes)
