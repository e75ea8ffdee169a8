"""OpenVINO IR -> int8 IR with NNCF post-training quantization (nncf.quantize).

NNCF puts FakeQuantize ops on activations, with ranges from the calibration samples, and
stores weights as int8 constants (one symmetric scale per output channel); OpenVINO's CPU
plugin fuses each FakeQuantize -> MatMul/Convolution into an int8 kernel. The runtime's info
counts which ops really ran in i8/u8.

model_type "auto" picks NNCF's transformer handling (SmoothQuant, and attention's
activation x activation MatMuls quantized on both inputs) when the graph has attention: a
ScaledDotProductAttention op, or a MatMul whose inputs are both activations. Token-id inputs
alone do not decide it: an embedding bag classifier takes ids and has no attention.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hone._optional import require
from hone.errors import InputError, Unsupported
from hone.passes.openvino.convert import failure_reason, layer_nodes, read, save, weight_constant
from hone.passes.openvino.convert import weight_precisions, weighted_ops
from hone.passes.quantize import SATURATION_NOTE, QuantConfig, QuantizationPass, Scheme, check_keep_float
from hone.plugin import Artifact, BuildContext, Claim, Variant

if TYPE_CHECKING:
    import openvino as ov

    from hone.hardware import Hardware
    from hone.models.workload import Workload

PRESETS = ("performance", "mixed")  # performance: symmetric activations; mixed: asymmetric
# NNCF's OverflowFix: weights of these layers quantized to 7 bits ("first_layer": the first
# layer only, NNCF's default; "enable": every layer, for CPUs without VNNI; "disable": none).
OVERFLOW_FIXES = {"first_layer": "FIRST_LAYER", "enable": "ENABLE", "disable": "DISABLE"}
MODEL_TYPES = ("auto", "transformer", "default")
RANGES_IN_NOTES = 8  # enough to tell two calibrations apart without bloating the store
_NODE_NAME = re.compile(r"__module\.[^\s'\",]+")


@dataclasses.dataclass(frozen=True)
class NncfQuantizeConfig(QuantConfig):
    preset: str = "performance"
    model_type: str = "auto"
    calibration_samples: int = 128  # at most this many samples (whole batches) of the calibration set
    fast_bias_correction: bool = True  # False: NNCF's full bias correction (slower, per-layer inference)
    overflow_fix: str = "first_layer"  # variants() sets "enable" on CPUs whose int8 dot products saturate

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise InputError(f"preset must be one of {', '.join(PRESETS)}, not {self.preset!r}")
        if self.model_type not in MODEL_TYPES:
            raise InputError(f"model_type must be one of {', '.join(MODEL_TYPES)}, not {self.model_type!r}")
        if self.calibration_samples < 1:
            raise InputError(f"calibration_samples must be at least 1, got {self.calibration_samples}")
        if self.overflow_fix not in OVERFLOW_FIXES:
            raise InputError(f"overflow_fix must be one of {', '.join(OVERFLOW_FIXES)}, not {self.overflow_fix!r}")


class NncfQuantize(QuantizationPass[NncfQuantizeConfig]):
    name = "nncf_quantize"
    Config = NncfQuantizeConfig
    description = "int8 weights and activations calibrated on samples (NNCF post-training quantization)"
    requires = ("openvino", "nncf")
    consumes = ("openvino",)
    produces = "openvino"

    def scheme(self) -> Scheme:
        # NNCF's CPU config: int8 per-channel symmetric weights, per-tensor static activations;
        # the performance preset makes activations symmetric too, mixed makes them asymmetric.
        cfg = self.config
        symmetric = cfg.preset == "performance"
        bits = 7 if cfg.overflow_fix == "enable" else 8
        return Scheme(weight_bits=bits, weight_group=0, activations="static", activation_symmetric=symmetric)

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if device != "cpu":
            return []
        saturates = hw is not None and hw.int8_dot_saturates
        return [Variant(
            NncfQuantizeConfig(overflow_fix="enable" if saturates else "first_layer"), "openvino-int8",
            "int8 weights and activations, ranges calibrated by NNCF, run by OpenVINO's CPU int8 kernels"
            + (SATURATION_NOTE if saturates else ""),
            cost=0.5, compute_dtype="int8", addresses={"compute": Claim(0.75, "", unit="int8")},
        )]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        cfg = self.config
        check_layers(model, cfg.keep_float, self.layer_types)  # a typo fails before NNCF is even imported
        nncf = require("nncf")
        graph = read(model.path)
        ignored = ignored_nodes(graph, cfg.keep_float, model.module)
        items, used = _calibration_items(ctx, cfg.calibration_samples)
        model_type = cfg.model_type
        if model_type == "auto":
            model_type = "transformer" if has_attention(graph) else "default"
        start = time.perf_counter()
        try:
            with quiet_nncf():
                quantized = nncf.quantize(
                    graph,
                    nncf.Dataset(items),
                    preset=nncf.QuantizationPreset(cfg.preset),
                    target_device=nncf.TargetDevice.CPU,
                    subset_size=len(items),  # counts Dataset items, which are whole batches here
                    fast_bias_correction=cfg.fast_bias_correction,
                    model_type=nncf.ModelType.TRANSFORMER if model_type == "transformer" else None,
                    ignored_scope=nncf.IgnoredScope(names=ignored) if ignored else None,
                    advanced_parameters=nncf.AdvancedQuantizationParameters(
                        overflow_fix=getattr(nncf.OverflowFix, OVERFLOW_FIXES[cfg.overflow_fix])
                    ),
                )
        except Exception as exc:  # NNCF raises many types; all mean "cannot quantize this"
            raise Unsupported(quantizer_failure_reason("NNCF quantization", exc, graph)) from exc
        calibration_s = time.perf_counter() - start
        fake_quantize = [op for op in quantized.get_ordered_ops() if op.get_type_name() == "FakeQuantize"]
        if not fake_quantize:
            raise Unsupported("NNCF quantization found no MatMul or Convolution to quantize")
        path = save(quantized, ctx.workdir / "model.int8.xml")
        notes = {
            "quantization": {"method": "nncf_ptq", **cfg.to_dict()},
            "model_type": model_type,
            "calibration_s": round(calibration_s, 3),
            "calibration_samples_used": used,
            "fake_quantize_nodes": len(fake_quantize),
            "weight_precisions": weight_precisions(quantized),
            "activation_ranges": activation_ranges(fake_quantize),
            "kept_float": list(cfg.keep_float),
            "ignored_nodes": len(ignored),
        }
        return Artifact("openvino", module=model.module, path=path, compute_dtype="int8", notes=notes)


def check_layers(model: Artifact, keep_float: tuple[str, ...], layer_types: tuple[str, ...]) -> None:
    """keep_float names layers of the user's model: checked on the torch module the conversion
    kept, before any work, or (an IR from elsewhere) on the layers found in the graph."""
    if not keep_float:
        return
    if model.module is not None:
        check_keep_float(model.module, keep_float, layer_types)
        return
    known = {layer for _, _, layer in weighted_ops(read(model.path)) if layer}
    unknown = [name for name in keep_float if name not in known]
    if unknown:
        raise InputError(f"keep_float names {unknown} that are not layers of this OpenVINO graph",
                         hint=f"layers are named as in model.named_modules(), e.g. {', '.join(sorted(known)[:5])}")


def ignored_nodes(graph: "ov.Model", keep_float: tuple[str, ...], module: Any = None) -> list[str]:
    """The weighted ops of the keep_float layers, by friendly name, for NNCF's IgnoredScope
    (`module`, the torch model the IR came from, finds layers whose names a fold erased). A
    layer with no op in the graph cannot be kept in float: say so rather than quantize it."""
    if not keep_float:
        return []
    nodes = layer_nodes(graph, keep_float, module)
    missing = [layer for layer, names in nodes.items() if not names]
    if missing:
        raise Unsupported(f"keep_float layers {missing} have no MatMul/Convolution in the OpenVINO graph")
    return sorted({name for names in nodes.values() for name in names})


def has_attention(graph: "ov.Model") -> bool:
    """An attention op, or a MatMul of two activations (q @ k^T, scores @ v): what NNCF's
    transformer mode is for. A Gram matrix (x @ x^T) counts too; set model_type to override."""
    for op in graph.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "ScaledDotProductAttention" or (kind == "MatMul" and weight_constant(op) is None):
            return True
    return False


@contextlib.contextmanager
def quiet_nncf() -> Iterator[None]:
    """NNCF draws rich progress bars on stdout and logs INFO tables there (its handler writes
    to stdout): both would garble the progress display. Failures still raise; the logger's
    level is restored afterwards."""
    from nncf.common.logging import nncf_logger

    level = nncf_logger.level
    nncf_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        nncf_logger.setLevel(level)


def quantizer_failure_reason(what: str, exc: BaseException, graph: "ov.Model") -> str:
    """failure_reason, plus the type of the first graph node the message names."""
    reason = failure_reason(what, exc)
    kinds = {op.get_friendly_name(): op.get_type_name() for op in graph.get_ordered_ops()}
    text = str(exc) + str(exc.__cause__ or "")
    for name in _NODE_NAME.findall(text):
        if name in kinds:
            return f"{reason} (at {kinds[name]} {name})"
    return reason


def activation_ranges(fake_quantize: list[Any]) -> dict[str, list[float]]:
    """[low, high] of the first activation FakeQuantize ops by name: what calibration chose."""
    ranges: dict[str, list[float]] = {}
    for op in fake_quantize:
        if len(ranges) >= RANGES_IN_NOTES:
            break
        source, low, high = (op.input_value(i).get_node() for i in range(3))
        if source.get_type_name() == "Constant":  # a weight's FakeQuantize, not an activation's
            continue
        if low.get_type_name() != "Constant" or high.get_type_name() != "Constant":
            continue
        ranges[op.get_friendly_name()] = [float(low.get_data().min()), float(high.get_data().max())]
    return ranges


def _calibration_items(ctx: BuildContext, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Whole batches (the IR has the example's static shape) up to `limit` samples, at least
    one, as {input name: array}; each input keeps the example's dtype (int64 ids stay int64).
    Returns the items and how many samples they hold, padding included."""
    items: list[dict[str, Any]] = []
    used = 0
    for batch in ctx.calibration_batches():
        size = int(batch[0].shape[0])
        if items and used + size > limit:
            break
        inputs = zip(ctx.input_names, batch, ctx.example_inputs)
        items.append({name: t.detach().to("cpu", example.dtype).numpy() for name, t, example in inputs})
        used += size
    return items, used
