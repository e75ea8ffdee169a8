"""ONNX -> ONNX in QDQ form with activation ranges fixed ahead of time from calibration samples
(ONNX Runtime's quantize_static). Faster than dynamic int8 (no per-batch range scan), but the
answers depend on the calibrator: minmax keeps outliers in range at the cost of resolution,
percentile and entropy clip them. The notes keep the scales so a run shows what was chosen."""

from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hone.errors import InputError, Unsupported
from hone.passes.onnx.layers import WEIGHT_OPS, follow_nodes, int8_weight_nodes, select_nodes
from hone.passes.quantize import SATURATION_NOTE, QuantConfig, QuantizationPass, Scheme
from hone.passes.onnx.ort_quantize_dynamic import QUANT_TYPES, count_quantized_nodes, drop_initializer_shapes
from hone.passes.onnx.ort_quantize_dynamic import failure_reason, quant_type
from hone.plugin import Artifact, BuildContext, Claim, Variant

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

CALIBRATE_METHODS = ("minmax", "entropy", "percentile")
QUANT_FORMATS = ("qdq",)  # QOperator graphs run on fewer EPs; not offered until something needs them
SCALES_IN_NOTES = 8  # enough to tell calibrators apart without bloating the store
# quantize_static does not forward its entropy calibrator's bin counts, and that calibrator's
# default (128 histogram bins, 128 quantized bins) leaves one candidate threshold: the full range,
# i.e. minmax. We calibrate entropy ourselves with TensorRT's counts so it can clip outliers.
ENTROPY_BINS = 2048
ENTROPY_QUANTIZED_BINS = 128
# The trait of a graph whose Q/DQ pairs are signed int8 with zero points of 0 (symmetric
# activations and weights): the explicit quantization TensorRT takes.
SYMMETRIC_QDQ = "int8-qdq-symmetric"


@dataclasses.dataclass(frozen=True)
class OrtQuantizeStaticConfig(QuantConfig):
    calibrate_method: str = "minmax"
    percentile: float = 99.999  # used by "percentile" only
    calibration_samples: int = 128  # at most this many samples of the calibration set
    per_channel: bool = False
    activation_symmetric: bool = False
    weight_symmetric: bool = True
    quant_format: str = "qdq"
    activation_type: str = "quint8"
    weight_type: str = "qint8"
    # 7-bit weights against VPMADDUBSW saturation on x86 without VNNI; set there by variants().
    reduce_range: bool = False

    def validate(self) -> None:
        if self.calibrate_method not in CALIBRATE_METHODS:
            raise InputError(f"calibrate_method must be one of {', '.join(CALIBRATE_METHODS)}, not {self.calibrate_method!r}")
        if not 90.0 < self.percentile <= 100.0:
            raise InputError(f"percentile must be in (90, 100], not {self.percentile}")
        if self.calibration_samples <= 0:
            raise InputError(f"calibration_samples must be positive, not {self.calibration_samples}")
        if self.quant_format not in QUANT_FORMATS:
            raise InputError(f"quant_format must be one of {', '.join(QUANT_FORMATS)}, not {self.quant_format!r}")
        for field in ("activation_type", "weight_type"):
            if getattr(self, field) not in QUANT_TYPES:
                raise InputError(f"{field} must be one of {', '.join(QUANT_TYPES)}, not {getattr(self, field)!r}")


class OrtQuantizeStatic(QuantizationPass[OrtQuantizeStaticConfig]):
    name = "ort_quantize_static"
    Config = OrtQuantizeStaticConfig
    description = "int8 QDQ graph calibrated on samples (onnxruntime quantize_static)"
    requires = ("onnxruntime", "onnx")
    consumes = ("onnx",)
    produces = "onnx"
    # Calibration runs on ONNX Runtime's CPU provider whatever the target; on CUDA the QDQ graph
    # feeds TensorRT (the tensorrt_engine runtime's int8 variant needs its symmetric form).
    devices = ("cpu", "cuda")

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        # minmax only: entropy and percentile are selectable by config; offering all three
        # would triple the default sweep's calibration time for one model.
        if device.startswith("cuda"):
            # TensorRT takes signed int8 Q/DQ with zero points of 0: symmetric qint8 activations;
            # per-channel weight scales are what TensorRT's own int8 recipes use.
            config = OrtQuantizeStaticConfig(activation_type="qint8", activation_symmetric=True, weight_type="qint8",
                                             weight_symmetric=True, per_channel=True)
            return [Variant(config, "ort-int8-qdq",
                            "int8 QDQ graph, symmetric signed ranges calibrated ahead of time (minmax)",
                            cost=0.5, compute_dtype="int8", gives=frozenset({SYMMETRIC_QDQ}))]
        if device != "cpu":
            return []
        # Where u8 x s8 pairs would clip (no VNNI): 7-bit weights, per channel, as ONNX Runtime
        # advises. What 7 bits cost MiniLM's dynamic int8 where 8 bits do not clip (VNNI):
        # 0.105 of mean cosine with one scale per tensor, 0.001 with one per channel.
        saturates = hw is not None and hw.int8_dot_saturates
        return [Variant(
            OrtQuantizeStaticConfig(reduce_range=saturates, per_channel=saturates), "ort-int8-static",
            "int8 weights and activations, ranges calibrated ahead of time (minmax)" + (SATURATION_NOTE if saturates else ""),
            cost=0.5, compute_dtype="int8", addresses={"compute": Claim(0.7, "", unit="int8")},
        )]

    def scheme(self) -> Scheme:
        cfg = self.config
        return Scheme(weight_bits=7 if cfg.reduce_range else 8, weight_group=0 if cfg.per_channel else -1,
                      activation_symmetric=cfg.activation_symmetric)

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        import time

        from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        cfg = self.config
        source, prepared = ctx.workdir / "model.prequant.onnx", ctx.workdir / "model.preprocessed.onnx"
        path = ctx.workdir / "model.int8-static.onnx"
        op_types = drop_initializer_shapes(model.path, source)
        # Layers only (Linear/Conv weights); keep_float ones and activation matmuls stay float.
        # Chosen on the exported graph (pre-processing drops the scope metadata), then followed
        # into the pre-processed one, whose fusions rename nodes.
        quantize_nodes, kept_nodes = select_nodes(source, cfg.keep_float, model.module)
        notes: dict[str, Any] = {}
        try:  # shape inference + ORT's basic fusions let more ops get QDQ pairs; optional
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            quantize_nodes = follow_nodes(quantize_nodes, source, prepared)
            source = prepared
        except Exception as exc:  # a model it cannot pre-process still quantizes without it
            notes["pre_process_skipped"] = failure_reason("quant_pre_process", exc, op_types)
        feeds = _calibration_feeds(ctx, cfg.calibration_samples)
        extra = {
            "ActivationSymmetric": cfg.activation_symmetric,
            "WeightSymmetric": cfg.weight_symmetric,
            # The histogram calibrators have their own symmetry flag; kept equal to the
            # quantizer's so the clipped range is the one the scale is computed from.
            "CalibTensorRangeSymmetric": cfg.activation_symmetric,
            "CalibPercentile": cfg.percentile,
            # QDQ on a layer's output lets ORT fuse DQ-MatMul-Q into an int8 kernel (MiniLM
            # bs8: 1.12x eager with it, 0.91x without, same cosine), but it rounds the next
            # layer's input too. With layers kept in float, outputs stay float so a kept layer
            # really sees float input: the kept candidate is slower, and measured as such.
            "OpTypesToExcludeOutputQuantization": list(WEIGHT_OPS) if cfg.keep_float else [],
        }
        method = getattr(CalibrationMethod, {"minmax": "MinMax"}.get(cfg.calibrate_method, cfg.calibrate_method.title()))
        start = time.perf_counter()
        try:  # the calibrators print progress to stdout; it would garble the progress display
            with contextlib.redirect_stdout(io.StringIO()):
                cache = _entropy_ranges(source, feeds, ctx, cfg) if cfg.calibrate_method == "entropy" else None
                quantize_static(
                    str(source), str(path), _reader(feeds), quant_format=QuantFormat.QDQ,
                    nodes_to_quantize=quantize_nodes or None,
                    per_channel=cfg.per_channel, reduce_range=cfg.reduce_range,
                    activation_type=quant_type(cfg.activation_type),
                    weight_type=quant_type(cfg.weight_type), calibrate_method=method, extra_options=extra,
                    calibration_cache_path=cache,  # when set, quantize_static takes these ranges as they are
                )
        except Exception as exc:  # the quantizer raises many types; all mean "cannot quantize this"
            raise Unsupported(failure_reason("ORT static quantization", exc, op_types)) from exc
        calibration_s = time.perf_counter() - start  # calibration and quantization: one call
        activation_scales, weight_scale_count = scales(path)
        # quantize_static skips, silently, a node it has no int8 form for: say which stayed float.
        not_int8 = sorted(set(quantize_nodes) - int8_weight_nodes(path))
        if not_int8:
            notes["selected_but_float"] = not_int8
        notes.update(
            quantization={"method": "ort_static", **cfg.to_dict()},
            calibrate_method=cfg.calibrate_method,
            calibration_samples_used=sum(len(next(iter(f.values()))) for f in feeds),
            quantized_nodes=count_quantized_nodes(path),
            activation_scales=activation_scales,
            weight_scale_count=weight_scale_count,
            calibration_s=calibration_s,
            kept_float=list(cfg.keep_float),
            kept_float_nodes=kept_nodes,
        )
        return Artifact("onnx", path=path, compute_dtype="int8", notes=notes)


def _calibration_feeds(ctx: BuildContext, limit: int) -> list[dict[str, Any]]:
    """Whole batches (the exported graph may accept only the example batch size) up to `limit`
    samples, at least one; each input keeps the example input's dtype (int64 ids stay int64)."""
    feeds: list[dict[str, Any]] = []
    used = 0
    for batch in ctx.calibration_batches():
        size = int(batch[0].shape[0])
        if feeds and used + size > limit:
            break
        inputs = zip(ctx.input_names, batch, ctx.example_inputs)
        feeds.append({name: t.detach().to("cpu", example.dtype).numpy() for name, t, example in inputs})
        used += size
    return feeds


def _entropy_ranges(source: Path, feeds: list[dict[str, Any]], ctx: BuildContext, cfg: OrtQuantizeStaticConfig) -> Path:
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

    calibrator = create_calibrator(
        source,
        augmented_model_path=str(ctx.workdir / "model.entropy-augmented.onnx"),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"symmetric": cfg.activation_symmetric, "num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS},
    )
    calibrator.collect_data(_reader(feeds))
    path = ctx.workdir / "entropy-ranges.json"
    save_tensors_data(calibrator.compute_data(), path)
    return path


def _reader(feeds: list[dict[str, Any]]) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class _Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._items, None)

    return _Feeds()


def scales(path: Path) -> tuple[dict[str, float], int]:
    """The first activation scales (QuantizeLinear on a computed tensor) by tensor name, and the
    number of weight scale values (one per tensor, or one per channel with per_channel)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {t.name: t for t in graph.initializer}
    activation: dict[str, float] = {}
    weight_count = 0
    for node in graph.node:
        scale = inits.get(node.input[1]) if len(node.input) > 1 else None
        if scale is None:
            continue
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits and len(activation) < SCALES_IN_NOTES:
            activation[node.input[0]] = float(numpy_helper.to_array(scale).reshape(-1)[0])
        elif node.op_type == "DequantizeLinear" and node.input[0] in inits and inits[node.input[0]].data_type in (2, 3):
            weight_count += int(numpy_helper.to_array(scale).size)  # 2, 3: uint8, int8 (not int32 biases)
    return activation, weight_count
