"""Quantization-aware training through torchao's PT2E flow: the pt2e-int8 recipe, fine-tuned.

Export the model in train mode, insert fake-quantize modules (prepare_qat_pt2e with the QAT form
of the x86 config), fine-tune a few hundred optimizer steps with the user's train step (their
data and loss: `TrainSet`), then switch the graph to eval, convert to quantize/dequantize ops and
let Inductor (with freezing) lower them to oneDNN int8, exactly as pt2e_int8 does.

Batch norm: export in train mode gives training-form batch_norm, which prepare_qat_pt2e fuses
with its conv (the weight is fake-quantized after BN scaling, as the int8 kernel will see it);
move_exported_model_to_eval switches the graph to running statistics and convert_pt2e folds BN
into the conv. Exporting in eval mode would miss that fusion and quantize unfolded weights.

The user's module is never trained: the export is taken from a deep copy.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import TYPE_CHECKING

import torch

from hone._optional import require
from hone.errors import InputError, Unsupported
from hone.passes.quantize import SATURATION_NOTE, QuantConfig, QuantizationPass, Scheme, check_keep_float
from hone.passes.torch.pt2e_int8 import (
    PT2E_LAYER_TYPES,
    QuantizedGraph,
    _count_qdq_ops,
    _reason,
    check_weight_bits,
    export_batch_dynamic,
    x86_quantizer,
)
from hone.passes.torch._training import checked_loss, shuffled_batches
from hone.plugin import Artifact, BuildContext, Variant

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import TrainSet, Workload

OPTIMIZERS = ("adam", "sgd")
NO_TRAIN_SET = "QAT needs a train step: pass train=TrainSet(...) to hone.optimize (digits-cnn has a built-in one)"
# Observers (activation ranges) and batch-norm statistics update for this share of the steps;
# the rest fine-tunes the weights against fixed scales, as the int8 model will run them.
OBSERVER_FRACTION = 0.75
LOSS_WINDOW = 10  # the reported final loss averages the last steps (one batch is noisy)


@dataclasses.dataclass(frozen=True)
class Pt2eQatConfig(QuantConfig):
    # A short fine-tune of an already trained model: a few epochs of a small data set.
    steps: int = 200
    lr: float = 1e-4  # small: the float weights are already good, QAT only nudges them to the grid
    batch_size: int = 32
    optimizer: str = "adam"
    seed: int = 0  # batch order
    weight_bits: int = 8  # 7 where the probe finds no VNNI (see pt2e_int8)
    reduce_range: bool = False  # 7-bit activations

    def validate(self) -> None:
        if self.steps < 1:
            raise InputError(f"steps must be at least 1, got {self.steps}")
        if not self.lr > 0:
            raise InputError(f"lr must be positive, got {self.lr}")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        check_weight_bits(self.weight_bits)


class Pt2eQat(QuantizationPass[Pt2eQatConfig]):
    name = "pt2e_qat"
    needs_calibration = False  # its ranges are learned on the train set, not calibrated
    Config = Pt2eQatConfig
    description = "static int8 fine-tuned with the user's train step (PT2E QAT), lowered by Inductor to oneDNN int8"
    requires = ("torchao",)
    devices = ("cpu",)
    produces = "torch-quantized"  # the same quantize/dequantize graph as pt2e_int8's
    layer_types = PT2E_LAYER_TYPES

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if device != "cpu" or workload is None or workload.train is None:
            return []
        saturates = hw is not None and hw.int8_dot_saturates
        origin = "static int8 fine-tuned with your train step (QAT) to recover accuracy (oneDNN)" + (
            SATURATION_NOTE if saturates else "")
        return [Variant(Pt2eQatConfig(weight_bits=7 if saturates else 8), "pt2e-int8-qat", origin, cost=1.5,
                        compute_dtype="int8")]

    def scheme(self) -> Scheme:
        # The same int8 scheme as pt2e_int8: per-channel symmetric weights, static uint8 activations.
        cfg = self.config
        return Scheme(weight_bits=cfg.weight_bits, activation_bits=7 if cfg.reduce_range else 8)

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        cfg = self.config
        train = ctx.train
        if train is None:
            raise Unsupported(NO_TRAIN_SET)
        require("torchao")
        check_keep_float(model.module, cfg.keep_float, self.layer_types)
        _check_train_set(train, ctx.input_names)
        from torchao.quantization.pt2e import allow_exported_model_train_eval, move_exported_model_to_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

        quantizer = x86_quantizer(cfg.keep_float, is_qat=True, reduce_range=cfg.reduce_range, weight_bits=cfg.weight_bits)
        batch_size = min(cfg.batch_size, len(train))
        try:
            exported, static_reason = _export_for_training(model.module, train, ctx, batch_size)
            if static_reason:
                batch_size = int(ctx.example_inputs[0].shape[0])
                if batch_size > len(train):
                    raise Unsupported(f"pt2e qat: the model's batch cannot be dynamic ({static_reason}) and the "
                                      f"train set has fewer samples ({len(train)}) than one batch ({batch_size})")
            prepared = prepare_qat_pt2e(exported, quantizer)
        except (InputError, Unsupported):
            raise
        except Exception as exc:  # export/quantizer failures are many types; the reason is what matters
            raise Unsupported(f"pt2e qat: {_reason(exc)}") from exc

        start = time.perf_counter()
        losses = _fine_tune(prepared, train, ctx.input_names, cfg, batch_size)
        train_s = time.perf_counter() - start

        try:
            move_exported_model_to_eval(prepared)  # dropout off, batch norm on running statistics
            converted = convert_pt2e(prepared)  # folds the QAT conv-bn pairs
            allow_exported_model_train_eval(converted)
        except Exception as exc:
            raise Unsupported(f"pt2e qat: {_reason(exc)}") from exc
        q_ops = _count_qdq_ops(converted)
        if q_ops == 0:
            raise Unsupported("pt2e qat: the X86 quantizer found no Linear/Conv op to quantize")
        final = losses[-LOSS_WINDOW:]
        notes = {"quantization": "int8-static-pt2e-qat", "quantizer": "x86_inductor",
                 "steps": len(losses), "batch_size": batch_size, "lr": cfg.lr, "optimizer": cfg.optimizer,
                 "train_s": round(train_s, 3), "initial_loss": round(losses[0], 6),
                 "final_loss": round(sum(final) / len(final), 6), "dynamic_batch": static_reason is None,
                 "qdq_ops": q_ops, "kept_float": list(cfg.keep_float), "weight_bits": cfg.weight_bits,
                 "reduce_range": cfg.reduce_range}
        if static_reason:
            notes["static_batch_reason"] = static_reason
        return Artifact(self.produces, QuantizedGraph(converted), compute_dtype="int8", notes=notes)


def _check_train_set(train: "TrainSet", input_names: list[str]) -> None:
    missing = [n for n in input_names if n not in train.samples]
    if missing:
        raise InputError(f"the train set has no samples for input(s) {missing}",
                         hint=f"TrainSet.samples needs one tensor per model input: {', '.join(input_names)}")
    if len(train) < 1:
        raise InputError("the train set is empty")
    if train.labels is not None and int(train.labels.shape[0]) != len(train):
        raise InputError(f"the train set has {len(train)} samples but {int(train.labels.shape[0])} labels")


def _export_for_training(
    module: torch.nn.Module, train: "TrainSet", ctx: BuildContext, batch_size: int
) -> tuple[torch.fx.GraphModule, str | None]:
    """The graph in train mode, from a copy of the module. The batch dim is exported dynamic so
    training runs at `batch_size` and the result at the example batch size; a model whose batch
    cannot be symbolic is exported at the example batch size, which training then uses too.
    Returns the graph and, when its batch is static, why."""
    copied = copy.deepcopy(module).train()
    for p in copied.parameters():  # a user's frozen weights would otherwise stay frozen in QAT
        p.requires_grad_(True)
    sample = tuple(train.samples[name][:batch_size].clone() for name in ctx.input_names)
    # A reshape that hard-codes the batch: specialise on the runtime's batch.
    graph, facts = export_batch_dynamic(copied, sample, tuple(t.clone() for t in ctx.example_inputs))
    return graph, facts.get("static_batch_reason")


def _fine_tune(
    prepared: torch.fx.GraphModule, train: "TrainSet", input_names: list[str], cfg: Pt2eQatConfig, batch_size: int
) -> list[float]:
    """Optimizer steps through the user's train step; returns each step's loss."""
    from torchao.quantization.pt2e import disable_observer

    params = [p for p in prepared.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=cfg.lr)
    else:
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9)
    freeze_at = max(1, int(cfg.steps * OBSERVER_FRACTION))
    losses: list[float] = []
    # A caller may hold inference mode (a worker, a notebook): training needs autograd.
    with torch.inference_mode(False), torch.enable_grad():
        batches = shuffled_batches(train.samples, train.labels, input_names, batch_size, cfg.steps, cfg.seed)
        for step, (inputs, labels) in enumerate(batches):
            if step == freeze_at:
                prepared.apply(disable_observer)
                _freeze_batch_norm_stats(prepared)
            try:
                loss = train.step(prepared, inputs, labels)
            except Exception as exc:
                raise Unsupported(f"pt2e qat: the train step failed: {_reason(exc)}") from exc
            value = checked_loss(loss, step, "pt2e qat", cfg.lr)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(value)
    return losses


def _freeze_batch_norm_stats(prepared: torch.fx.GraphModule) -> None:
    """Normalise with the running statistics from here on, as the folded conv will (torchao's QAT
    recipe does this after the first epochs): batch norm's `training` argument set to False."""
    targets = (torch.ops.aten.batch_norm.default, torch.ops.aten._native_batch_norm_legit.default)
    changed = False
    for node in prepared.graph.nodes:
        # batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, ...)
        if node.op == "call_function" and node.target in targets and node.args[5] is True:
            node.args = (*node.args[:5], False, *node.args[6:])
            changed = True
    if changed:
        prepared.recompile()
