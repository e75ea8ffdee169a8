"""torch -> OpenVINO IR (openvino.convert_model, which traces the module on the example inputs);
a TorchScript archive the same way, an ONNX file through OpenVINO's ONNX frontend.

The IR is saved in fp32: save_model compresses weights to fp16 by default, which would change
the answers before any runtime setting does. Shapes are fixed to the example inputs' (hone
validates, evaluates and measures at that shape, as the ONNX export does), so the CPU plugin
picks its kernels once. The artifact keeps the torch module beside the IR: the quantization
passes check keep_float against the user's layers before doing any work.

Node names (read from converted models, OpenVINO 2026.4 PyTorch frontend): every op is named
after the TorchScript scope of the module that ran it, every weight constant after its
parameter. With FlatIO's "module." attribute in front:
    __module.module.encoder.layer.0.attention.self.query/aten::linear/MatMul   (the op)
    self.module.encoder.layer.0.attention.self.query.weight                    (its weight)
`layer_nodes` maps a torch layer to its weighted ops by either name; NNCF keeps op names when
it quantizes, so the same helpers read the quantized IR back. A convolution followed by a
BatchNorm loses both names (the frontend folds the BatchNorm in: "Convolution Multiply_2718",
weight "Multiply_2727"); with the torch module at hand it is found by its weight's values
(`passes.quantize.match_folded_weights`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hone.config import Config
from hone._optional import block_usage_telemetry
from hone.errors import Unsupported
from hone.passes.base import Pass
from hone.passes.quantize import FLATIO_PREFIX, match_folded_weights
from hone.plugin import Artifact, BuildContext, Variant

if TYPE_CHECKING:
    import openvino as ov

    from hone.hardware import Hardware
    from hone.models.workload import Workload

NODE_PREFIX = "__module." + FLATIO_PREFIX  # scope of ops run inside the user's model
WEIGHT_PREFIX = "self." + FLATIO_PREFIX  # parameters of the user's model
# Ops that consume a weight: what a torch Linear/Conv becomes in the IR.
WEIGHTED_OPS = ("MatMul", "Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData")
# Between a weight constant and its op: layout changes, and after weight compression the
# dequantization (Convert, Subtract zero point, Multiply scale, Reshape groups).
_WEIGHT_PATH_OPS = ("Convert", "Reshape", "Transpose", "Unsqueeze", "Squeeze", "Multiply", "Subtract", "FakeQuantize")
_MAX_WEIGHT_PATH = 8
_ATEN_OP = re.compile(r"\baten::\w+")


@dataclasses.dataclass(frozen=True)
class OpenVinoConvertConfig(Config):
    # False keeps the converted graph's dynamic dimensions (any batch size, slower kernels).
    static_shapes: bool = True


class OpenVinoConvert(Pass[OpenVinoConvertConfig]):
    name = "openvino_convert"
    Config = OpenVinoConvertConfig
    description = "convert to OpenVINO IR with openvino.convert_model (fp32 weights)"
    requires = ("openvino",)
    stage = "convert"
    produces = "openvino"
    # A torch module or a loaded TorchScript archive is traced on the example inputs; an ONNX
    # file is read by OpenVINO's ONNX frontend.
    consumes = ("torch", "torchscript", "onnx")
    keeps = ()  # the IR carries no torch memory format

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        # A converter adds nothing to a recipe's label or origin: the steps around it say what it is for.
        return [Variant(OpenVinoConvertConfig(), "", "", cost=0.5)]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        block_usage_telemetry()  # before openvino's first import in this process
        import openvino as ov

        cfg = self.config
        try:
            if model.format == "onnx":
                converted = ov.convert_model(str(model.path))
            elif model.format == "torchscript":
                converted = _convert_torchscript(model.module, ctx)
            else:
                converted = _convert(model.module, ctx)
        except Exception as exc:  # the frontend raises many types; all mean "cannot convert this"
            raise Unsupported(failure_reason("OpenVINO conversion", exc)) from exc
        _name_ports(converted, ctx)
        if cfg.static_shapes:
            shapes = {port: ov.PartialShape(list(t.shape)) for port, t in zip(converted.inputs, ctx.example_inputs)}
            try:
                converted.reshape(shapes)
            except Exception as exc:  # shape inference failing at the traced shape: a frontend bug
                raise Unsupported(failure_reason("OpenVINO reshape to the example shapes", exc)) from exc
        path = save(converted, ctx.workdir / "model.xml")
        notes = {
            "openvino_version": ov.__version__.split("-")[0],
            "openvino_ops": len(converted.get_ordered_ops()),
            "openvino_static_shapes": cfg.static_shapes,
            "openvino_ir_bytes": path.with_suffix(".bin").stat().st_size,
        }
        return Artifact("openvino", module=model.module, path=path, compute_dtype=model.compute_dtype, notes=notes)


def _convert(module: Any, ctx: BuildContext) -> "ov.Model":
    import openvino as ov
    import torch

    # Tracing warns about every Python branch on a tensor (TracerWarning); the frontend prints
    # its own notes to stdout. Both would garble the progress display.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return ov.convert_model(module.eval(), example_input=tuple(ctx.example_inputs))


def _convert_torchscript(module: Any, ctx: BuildContext) -> "ov.Model":
    """A loaded TorchScript module behind FlatIO, traced and frozen first: freezing inlines the
    script's call and folds a dict it returns (prim::DictConstruct, which the frontend has no
    rule for) into plain outputs."""
    import openvino as ov
    import torch

    inputs = tuple(ctx.example_inputs)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(module.eval(), inputs, check_trace=False, strict=False)
        return ov.convert_model(torch.jit.freeze(traced.eval()), example_input=inputs)


def _name_ports(model: "ov.Model", ctx: BuildContext) -> None:
    """hone's input and output names on the IR's ports, in order: the frontend calls FlatIO's
    inputs "args" and names its outputs after inner values (or not at all)."""
    if len(model.inputs) != len(ctx.input_names) or len(model.outputs) != len(ctx.output_names):
        raise Unsupported(
            f"the OpenVINO graph has {len(model.inputs)} inputs and {len(model.outputs)} outputs, "
            f"the model {len(ctx.input_names)} and {len(ctx.output_names)}"
        )
    # TorchScript names inner values too ("input", "output", "x"): take hone's names off them
    # so each names exactly one port.
    reserved = set(ctx.input_names) | set(ctx.output_names)
    for op in model.get_ordered_ops():
        for output in op.outputs():
            if output.get_names() & reserved:
                output.get_tensor().set_names(output.get_names() - reserved)
    for port, name in zip(model.inputs, ctx.input_names):
        port.get_tensor().set_names({name})
        port.get_node().set_friendly_name(name)
    for port, name in zip(model.outputs, ctx.output_names):
        port.get_tensor().set_names({name})


def save(model: "ov.Model", path: Path) -> Path:
    import openvino as ov

    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def read(path: Path) -> "ov.Model":
    import openvino as ov

    return ov.Core().read_model(str(path))


def failure_reason(what: str, exc: BaseException) -> str:
    """One line: the root cause's first informative line, and the torch ops it names (the
    frontend lists the ops it has no conversion for at the end of a long report)."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(root).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # OpenVINO's messages open with "Exception from src/...cpp:NN:" / "Check '...' failed at"
    # and section headers ending in ":"; the first other line says what went wrong.
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '")) and not line.endswith(":")]
    # An unconverted model's report ends in a summary naming the ops without a conversion rule.
    useful = [line.lstrip("- ") for line in useful if "No conversion rule" in line] or useful
    reason = f"{what} failed: {type(root).__name__}: {(useful or lines or [''])[0]}"
    ops = sorted(set(_ATEN_OP.findall(text)))
    if ops and not all(op in reason for op in ops):
        reason += f" (torch ops {', '.join(ops[:5])})"
    return reason


# --- reading the IR: which torch layer each weighted op belongs to, and its weight precision ---


def layer_of_node(name: str) -> str | None:
    """"__module.module.fc1/aten::linear/MatMul" -> "fc1"; None for ops outside the user's model."""
    if not name.startswith(NODE_PREFIX):
        return None
    return name[len(NODE_PREFIX) :].split("/", 1)[0] or None


def layer_of_weight(name: str) -> str | None:
    """"self.module.fc1.weight" -> "fc1"; None for constants that are not a layer's weight."""
    if not (name.startswith(WEIGHT_PREFIX) and name.endswith(".weight")):
        return None
    return name[len(WEIGHT_PREFIX) : -len(".weight")] or None


def weight_constant(op: Any, inputs: tuple[int, ...] = (0, 1)) -> Any | None:
    """The Constant feeding a weighted op's weight through layout and dequantization ops, or
    None when both inputs are activations (attention's MatMuls)."""
    for index in inputs[: op.get_input_size()]:
        node = op.input_value(index).get_node()
        for _ in range(_MAX_WEIGHT_PATH):
            if node.get_type_name() == "Constant":
                return node
            if node.get_type_name() not in _WEIGHT_PATH_OPS:
                break
            node = node.input_value(0).get_node()
    return None


def weighted_ops(model: "ov.Model", module: Any = None) -> list[tuple[Any, Any, str | None]]:
    """(op, its weight constant, torch layer or None) for every op with a constant weight.
    With the torch `module`, ops whose names were lost to a fold are matched by weight value."""
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in WEIGHTED_OPS:
            continue
        weight = weight_constant(op)
        if weight is not None:
            layer = layer_of_node(op.get_friendly_name()) or layer_of_weight(weight.get_friendly_name())
            found.append((op, weight, layer))
    if module is None:
        return found
    unnamed = {op.get_friendly_name(): weight.get_data() for op, weight, layer in found
               if layer is None and weight.get_element_type().is_real()}
    matched = match_folded_weights(unnamed, module)
    return [(op, weight, layer or matched.get(op.get_friendly_name())) for op, weight, layer in found]


def layer_nodes(model: "ov.Model", names: tuple[str, ...], module: Any = None) -> dict[str, list[str]]:
    """Each torch layer in `names` -> the friendly names of its weighted ops. Matched by the op's
    scope, by its weight's parameter name, and (given the torch module) by weight value."""
    wanted = set(names)
    nodes: dict[str, list[str]] = {name: [] for name in names}
    for op, weight, layer in weighted_ops(model, module):
        candidates = {layer, layer_of_node(op.get_friendly_name()), layer_of_weight(weight.get_friendly_name())}
        for name in candidates & wanted:
            nodes[name].append(op.get_friendly_name())
    return nodes


def layer_weight_precisions(model: "ov.Model", module: Any = None) -> dict[str, str]:
    """torch layer -> element type of its stored weight ("f32", "i8", "u8", "i4", "u4")."""
    return {layer: weight.get_element_type().get_type_name() for _, weight, layer in weighted_ops(model, module) if layer}


def weight_precisions(model: "ov.Model") -> dict[str, int]:
    """How many weighted ops (MatMul, Convolution) store their weight in each element type."""
    counts = Counter(weight.get_element_type().get_type_name() for _, weight, _ in weighted_ops(model))
    return dict(sorted(counts.items()))


def embedding_precisions(model: "ov.Model") -> dict[str, int]:
    """How many embedding tables (a Gather from a layer's weight) are stored in each element
    type: weight compression stores them in int8 too; other Gathers read shapes."""
    counts: Counter[str] = Counter()
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Gather":
            table = weight_constant(op, inputs=(0,))
            if table is not None and layer_of_weight(table.get_friendly_name()):
                counts[table.get_element_type().get_type_name()] += 1
    return dict(sorted(counts.items()))
