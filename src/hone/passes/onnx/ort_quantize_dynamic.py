"""ONNX -> ONNX with int8 weights; activations are quantized at run time from each batch's own
range (ONNX Runtime's quantize_dynamic). Needs no calibration data, so it is the safe int8
candidate for any model; the sweep's task metric decides whether the answers survived.

The helpers below are shared with the static pass (ort_quantize_static.py).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hone.errors import InputError, Unsupported
from hone.passes.onnx.layers import select_nodes
from hone.passes.quantize import SATURATION_NOTE, QuantConfig, QuantizationPass, Scheme
from hone.plugin import Artifact, BuildContext, Variant

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

QUANT_TYPES = ("qint8", "quint8")
# Ops that only exist in a graph that really computes (or converts to) int8: counting them shows
# what was quantized, since quantize_* silently skips ops it has no kernel for.
_QUANT_OPS = {"QuantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul"}


@dataclasses.dataclass(frozen=True)
class OrtQuantizeDynamicConfig(QuantConfig):
    weight_type: str = "qint8"
    per_channel: bool = False
    # 7-bit weights: avoids VPMADDUBSW saturation on x86 without VNNI (ONNX Runtime's advice for
    # U8S8 there); variants() sets it where the probe finds no VNNI.
    reduce_range: bool = False
    op_types: tuple[str, ...] = ()  # empty: ONNX Runtime's default (MatMul, Conv, Gemm, Gather, ...)

    def __post_init__(self) -> None:
        # from_dict hands back JSON lists; a tuple keeps the config hashable and equal to itself.
        object.__setattr__(self, "op_types", tuple(self.op_types))
        super().__post_init__()

    def validate(self) -> None:
        if self.weight_type not in QUANT_TYPES:
            raise InputError(f"weight_type must be one of {', '.join(QUANT_TYPES)}, not {self.weight_type!r}")
        if not all(isinstance(op, str) and op for op in self.op_types):
            raise InputError(f"op_types must be ONNX op type names, got {self.op_types!r}")


class OrtQuantizeDynamic(QuantizationPass[OrtQuantizeDynamicConfig]):
    name = "ort_quantize_dynamic"
    Config = OrtQuantizeDynamicConfig
    description = "int8 weights, activations quantized on the fly (onnxruntime quantize_dynamic)"
    requires = ("onnxruntime", "onnx")
    consumes = ("onnx",)
    produces = "onnx"
    needs_calibration = False  # activation ranges come from each batch

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if device != "cpu":  # the integer kernels (MatMulInteger, ConvInteger) are CPU ones
            return []
        # Where u8 x s8 pairs would clip (no VNNI): 7-bit weights, per channel, as ONNX Runtime
        # advises. What 7 bits cost MiniLM's dynamic int8 where 8 bits do not clip (VNNI):
        # 0.105 of mean cosine with one scale per tensor, 0.001 with one per channel.
        saturates = hw is not None and hw.int8_dot_saturates
        return [Variant(
            OrtQuantizeDynamicConfig(reduce_range=saturates, per_channel=saturates), "ort-int8-dynamic",
            "int8 weights, activations quantized on the fly" + (SATURATION_NOTE if saturates else ""),
            compute_dtype="int8",
        )]

    def scheme(self) -> Scheme:
        cfg = self.config
        return Scheme(weight_bits=7 if cfg.reduce_range else 8, weight_group=0 if cfg.per_channel else -1,
                      activations="dynamic")

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        from onnxruntime.quantization import quantize_dynamic

        cfg = self.config
        source = ctx.workdir / "model.prequant.onnx"
        path = ctx.workdir / "model.int8-dynamic.onnx"
        op_types = drop_initializer_shapes(model.path, source)
        # Layers only (Linear/Conv weights); keep_float ones and activation matmuls stay float.
        quantize_nodes, kept_nodes = select_nodes(source, cfg.keep_float, model.module)
        try:
            quantize_dynamic(
                str(source),
                str(path),
                op_types_to_quantize=list(cfg.op_types) or None,
                nodes_to_quantize=quantize_nodes or None,
                per_channel=cfg.per_channel,
                reduce_range=cfg.reduce_range,
                weight_type=quant_type(cfg.weight_type),
            )
        except Exception as exc:  # the quantizer raises many types; all mean "cannot quantize this"
            raise Unsupported(failure_reason("ORT dynamic quantization", exc, op_types)) from exc
        notes = {
            "quantization": {"method": "ort_dynamic", **cfg.to_dict()},
            "quantized_nodes": count_quantized_nodes(path),
            "kept_float": list(cfg.keep_float),
            "kept_float_nodes": kept_nodes,
        }
        return Artifact("onnx", path=path, compute_dtype="int8", notes=notes)


def quant_type(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    return {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}[name]


def drop_initializer_shapes(source: Path | None, target: Path) -> set[str]:
    """Copy the model without value_info entries for initializers; returns its op types.

    The dynamo exporter records every weight's shape in value_info. ORT's quantizer rewrites
    Gemm as MatMul with a transposed weight and then re-runs shape inference, which fails on the
    stale (out, in) shape; shape inference rebuilds anything dropped here."""
    import onnx

    if source is None:
        raise Unsupported("ORT quantization needs an ONNX file, got an artifact without a path")
    proto = onnx.load(str(source))
    initializers = {t.name for t in proto.graph.initializer}
    keep = [v for v in proto.graph.value_info if v.name not in initializers]
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(keep)
    onnx.save(proto, str(target))
    return {n.op_type for n in proto.graph.node}


def count_quantized_nodes(path: Path) -> int:
    import onnx

    ops = (n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
    return sum(1 for op in ops if op in _QUANT_OPS or op.startswith("QLinear"))


def failure_reason(what: str, exc: BaseException, op_types: set[str]) -> str:
    """One line; names the op when the quantizer's message names one of the graph's op types."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    named = [op for op in sorted(op_types, key=len, reverse=True) if re.search(rf"\b{re.escape(op)}\b", text)]
    where = f" on op {named[0]}" if named else ""
    return f"{what} failed{where}: {type(exc).__name__}: {first}"
