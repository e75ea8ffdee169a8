"""OpenVINO IR -> IR with int8 or int4 weights (nncf.compress_weights, data-free).

Only the weights are quantized; they are stored in low precision and dequantized inside the
CPU plugin's MatMul kernels, so the win is memory traffic (large Linear layers, small
batches), not int8 arithmetic. Note that OpenVINO's CPU plugin by default also quantizes
these kernels' activations on the fly, in groups of 32 (DYNAMIC_QUANTIZATION_GROUP_SIZE,
which the runtime's info reads back); the Scheme says "none" for activations because that
fine-grained rounding is far closer to float than a per-tensor dynamic simulation would be.

int4 modes follow NNCF's defaults: embeddings and the last MatMul stay int8_asym, `ratio`
of the other layers go int4. A layer whose input features are not a multiple of group_size
gets the largest power-of-two group (>= 32) that divides them, else int8 (NNCF's ADJUST
fallback); when no layer at all ends up in int4 the candidate is Unsupported, since it
would be the int8 recipe under an int4 label.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from hone._optional import require
from hone.errors import InputError, Unsupported
from hone.passes.openvino.convert import embedding_precisions, read, save, weight_precisions, weighted_ops
from hone.passes.openvino.nncf_quantize import check_layers, ignored_nodes, quantizer_failure_reason, quiet_nncf
from hone.passes.quantize import QuantConfig, QuantizationPass, Scheme
from hone.plugin import Artifact, BuildContext, Claim, Variant

if TYPE_CHECKING:
    import openvino as ov

    from hone.hardware import Hardware
    from hone.models.workload import Workload

MODES = ("int8_asym", "int8_sym", "int4_sym", "int4_asym")
FOUR_BIT = ("i4", "u4")  # element types of int4 weights as OpenVINO stores them


@dataclasses.dataclass(frozen=True)
class NncfCompressWeightsConfig(QuantConfig):
    mode: str = "int8_asym"
    group_size: int = 128  # int4 only: input features sharing a scale; -1: one scale per output channel
    ratio: float = 1.0  # int4 only: share of the eligible layers in int4, the rest int8_asym

    def validate(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.group_size != -1 and self.group_size < 1:
            raise InputError(f"group_size must be positive or -1 (per channel), not {self.group_size}")
        if not 0.0 < self.ratio <= 1.0:
            raise InputError(f"ratio must be in (0, 1], not {self.ratio}")

    @property
    def bits(self) -> int:
        return 4 if self.mode.startswith("int4") else 8


class NncfCompressWeights(QuantizationPass[NncfCompressWeightsConfig]):
    name = "nncf_compress_weights"
    needs_calibration = False  # data-free: weights only
    Config = NncfCompressWeightsConfig
    description = "int8/int4 weight-only compression, data-free (NNCF compress_weights)"
    requires = ("openvino", "nncf")
    consumes = ("openvino",)
    produces = "openvino"

    def scheme(self) -> Scheme:
        cfg = self.config
        # int8 modes are per output channel; int4 is grouped unless group_size is -1.
        group = cfg.group_size if cfg.bits == 4 and cfg.group_size > 0 else 0
        return Scheme(weight_bits=cfg.bits, weight_group=group, activations="none")

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if device != "cpu":
            return []
        fewer_bytes = Claim(0.6, "int8 weights quarter the bytes of weight-streaming GEMMs")
        return [
            Variant(NncfCompressWeightsConfig(mode="int8_asym"), "openvino-int8-weights",
                    "int8 weights (per channel, asymmetric) dequantized in OpenVINO's CPU kernels",
                    compute_dtype="int8", addresses={"memory": fewer_bytes}),
            Variant(NncfCompressWeightsConfig(mode="int4_sym"), "openvino-int4-weights",
                    "int4 weights in groups of 128 (embeddings and the last layer int8) dequantized in OpenVINO's CPU kernels",
                    compute_dtype="int4"),
        ]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        cfg = self.config
        check_layers(model, cfg.keep_float, self.layer_types)  # a typo fails before NNCF is even imported
        nncf = require("nncf")
        graph = read(model.path)
        ignored = ignored_nodes(graph, cfg.keep_float, model.module)
        start = time.perf_counter()
        try:
            with quiet_nncf():
                compressed = nncf.compress_weights(graph, **_arguments(nncf, cfg, ignored))
        except Exception as exc:  # NNCF raises many types; all mean "cannot compress this"
            raise Unsupported(quantizer_failure_reason("NNCF weight compression", exc, graph)) from exc
        compress_s = time.perf_counter() - start
        precisions = weight_precisions(compressed)
        if cfg.bits == 4 and not any(precisions.get(t) for t in FOUR_BIT):
            raise Unsupported(
                f"NNCF stored no weight in int4 (group_size {cfg.group_size}; it keeps embeddings, the last "
                f"MatMul and layers whose input features no group of >= 32 divides in int8): got {precisions}"
            )
        path = save(compressed, ctx.workdir / f"model.{cfg.mode}.xml")
        notes: dict[str, Any] = {
            "quantization": {"method": "nncf_weights", **cfg.to_dict()},
            "calibration_s": 0.0,  # data-free
            "compress_s": round(compress_s, 3),
            "weight_precisions": precisions,
            "embedding_precisions": embedding_precisions(compressed),
            "kept_float": list(cfg.keep_float),
            "ignored_nodes": len(ignored),
        }
        if cfg.bits == 4:
            notes["int4_group_sizes"] = int4_group_sizes(compressed)
        return Artifact("openvino", module=model.module, path=path, compute_dtype=f"int{cfg.bits}", notes=notes)


def _arguments(nncf: Any, cfg: NncfCompressWeightsConfig, ignored: list[str]) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "mode": nncf.CompressWeightsMode(cfg.mode),
        "ignored_scope": nncf.IgnoredScope(names=ignored) if ignored else None,
    }
    if cfg.bits == 4:  # NNCF rejects group_size and ratio for int8 modes (always per channel)
        arguments.update(
            group_size=cfg.group_size,
            ratio=cfg.ratio,
            # A layer whose input features the group does not divide gets a smaller group or
            # int8, instead of failing the whole model (NNCF's default is to raise).
            advanced_parameters=nncf.AdvancedCompressionParameters(
                group_size_fallback_mode=nncf.GroupSizeFallbackMode.ADJUST
            ),
        )
    return arguments


def int4_group_sizes(graph: "ov.Model") -> list[int]:
    """The group sizes the int4 weights ended up with (-1: per channel), read from the grouped
    constants' shapes ([out, groups, group]) after the ADJUST fallback."""
    sizes = set()
    for _, weight, _ in weighted_ops(graph):
        if weight.get_element_type().get_type_name() in FOUR_BIT:
            shape = list(weight.get_output_shape(0))
            sizes.add(int(shape[-1]) if len(shape) == 3 else -1)
    return sorted(sizes)
