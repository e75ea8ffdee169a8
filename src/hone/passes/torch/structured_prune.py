"""Structured pruning: whole output channels of convolutions and Linear layers, and whole
attention heads, removed through torch-pruning's dependency graph, so the model really does
fewer FLOPs (a dense kernel gets smaller matrices) and stays a plain torch module that every
torch-consuming step (quantizers, compilers, exporters) takes.

Which channels go is decided by an importance criterion per coupled group (L1 or L2 weight
magnitude, first-order Taylor, or random as the control). A group whose pruning would change a
model output's shape (a classifier's classes, a transformer's residual width that feeds its
embedding output) is left whole: hone compares outputs with the reference, shapes included.

An optional short recovery follows: the workload's train step where it has one, otherwise
distillation from the unpruned model's own outputs on the calibration inputs (no labels
needed), bounded in steps and seconds. Pruning changes the answers by design, so the artifact
is marked approximate: the task metric decides (validate.check), and without one the pass
is not planned at all (nothing could accept it).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import TYPE_CHECKING, Any

import torch

from hone._optional import require
from hone.config import Config
from hone.errors import InputError, Unsupported
from hone.passes.base import BackOff, Pass
from hone.passes.torch._training import checked_loss, shuffled_batches
from hone.plugin import Artifact, BuildContext, Claim, Variant

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

CRITERIA = ("l1", "l2", "taylor", "random")
RECOVERIES = ("auto", "none")  # auto: the train step where the workload has one, else distillation
DEFAULT_RATIO = 0.3
RATIOS = (0.1, 0.3, 0.5)  # the sweep; the default plan takes DEFAULT_RATIO, the rest on request
# Attention modules name their projections and their head count in a few ways across
# transformers' models and hand-written ones; heads are pruned whole (q, k, v together).
QKV_NAMES = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"), ("q_lin", "k_lin", "v_lin"), ("q", "k", "v"))
HEAD_COUNT_ATTRS = ("num_attention_heads", "num_heads", "n_heads")
HEAD_WIDTH_ATTRS = ("attention_head_size", "head_dim")
ALL_HEADS_ATTRS = ("all_head_size", "inner_dim")
LOSS_WINDOW = 10  # the reported final recovery loss averages the last steps
# A retry at a lower ratio, after the candidate missed the accuracy budget, takes this share.
BACK_OFF_FACTOR = 0.5
MIN_RATIO = 0.05  # below it the FLOPs saved do not pay for a candidate


@dataclasses.dataclass(frozen=True)
class StructuredPruneConfig(Config):
    ratio: float = DEFAULT_RATIO  # share of each prunable group's channels (and of each layer's heads) removed
    criterion: str = "l1"
    heads: bool = True  # attention: remove whole heads (keeps head width, so any kernel still fits)
    recovery: str = "auto"
    recovery_steps: int = 200
    recovery_s: float = 60.0  # whichever of steps and seconds comes first ends the recovery
    lr: float = 1e-4  # a pruned, already trained model only needs nudging
    batch_size: int = 16
    keep: tuple[str, ...] = ()  # module paths (in the user's model) left unpruned
    seed: int = 0  # random criterion and batch order

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep", tuple(self.keep))  # JSON gives lists; stay hashable
        super().__post_init__()

    def validate(self) -> None:
        if not 0 < self.ratio < 1:
            raise InputError(f"pruning ratio must be in (0, 1), not {self.ratio}")
        if self.criterion not in CRITERIA:
            raise InputError(f"pruning criterion {self.criterion!r} is not one of {', '.join(CRITERIA)}")
        if self.recovery not in RECOVERIES:
            raise InputError(f"pruning recovery {self.recovery!r} is not one of {', '.join(RECOVERIES)}")
        if self.recovery_steps < 0 or self.recovery_s < 0:
            raise InputError("recovery steps and seconds must be 0 or more")
        if not self.lr > 0 or self.batch_size < 1:
            raise InputError(f"recovery needs lr > 0 and batch_size >= 1, got {self.lr} and {self.batch_size}")


def _tag(cfg: StructuredPruneConfig) -> str:
    return f"prune-{cfg.criterion}-{round(cfg.ratio * 100)}" + ("-raw" if cfg.recovery == "none" else "")


class StructuredPrune(Pass[StructuredPruneConfig]):
    name = "structured_prune"
    Config = StructuredPruneConfig
    description = "remove whole channels and attention heads (torch-pruning), then a short recovery"
    requires = ("torch_pruning",)
    devices = ("cpu", "cuda")
    stage = "prune"
    approximates = True

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if workload is not None and (workload.eval is None or not _has_prunable_layers(workload.module)):
            # Pruning changes the answers by design: only a task metric can accept it. And a
            # model with no Conv or Linear layer has nothing to prune.
            return []
        train = workload is not None and workload.train is not None
        recovery = "your train step" if train else "distillation from the fp32 model's outputs"
        found: list[Variant] = []
        for criterion in CRITERIA:
            for ratio in RATIOS:
                for raw in (False, True):
                    cfg = StructuredPruneConfig(ratio=ratio, criterion=criterion, recovery="none" if raw else "auto")
                    default = criterion == "l1" and ratio == DEFAULT_RATIO and not raw
                    origin = (f"{round(ratio * 100)} % of each layer's channels and heads removed by {criterion} importance"
                              + ("" if raw else f", then recovered with {recovery}"))
                    found.append(Variant(
                        cfg, _tag(cfg), origin,
                        # Recovery runs in the worker: about a minute at most, a few eager candidates' time.
                        cost=0.5 if raw else 3.0,
                        addresses={"compute": Claim(ratio, "fewer channels: smaller matrices and convolutions"),
                                   "memory": Claim(ratio, "fewer weights to read")},
                        pays_for=("compute", "memory"),
                        # One pruned candidate is in the default plan; the ratio and criterion
                        # sweep and the stacks are composed on request (--recipe prune-l2-50+...).
                        alone=default, stack=False,
                    ))
        return sorted(found, key=lambda v: v.alone, reverse=True)  # the first is the default

    @classmethod
    def summary(cls, notes: dict) -> list[str]:
        if "flops_before" not in notes:
            return []
        lines = [f"pruned {notes['flops_removed']:.0%} of the FLOPs ({notes['criterion']}, ratio {notes['ratio']:g}): "
                 f"{notes['params_before'] / 1e6:.2f}M -> {notes['params_after'] / 1e6:.2f}M parameters"]
        recovery = notes.get("recovery") or {}
        if recovery.get("steps"):
            lines.append(f"recovered by {recovery['method']}: {recovery['steps']} steps in {recovery['seconds']:.1f} s, "
                         f"loss {recovery['initial_loss']:.3g} -> {recovery['final_loss']:.3g}")
        else:
            lines.append("no recovery after pruning")
        return lines

    def back_off(self, attempt: int) -> BackOff | None:
        cfg = self.config
        ratio = round(cfg.ratio * BACK_OFF_FACTOR ** attempt, 3)
        if ratio < MIN_RATIO:
            return None
        lower = dataclasses.replace(cfg, ratio=ratio)
        return BackOff(lower, _tag(lower), _tag(cfg), f"pruning ratio lowered from {cfg.ratio:g} to {ratio:g}",
                       scale=ratio / cfg.ratio)

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        tp = require("torch_pruning", "prune")
        cfg = self.config
        teacher = model.module
        student = copy.deepcopy(teacher).eval()  # the caller's module is the reference
        inputs = tuple(t.clone() for t in ctx.example_inputs)
        with torch.inference_mode(False), torch.no_grad():
            want = _float_outputs(teacher(*inputs))
        ignored = _kept_modules(student, cfg.keep)
        heads = _attention_heads(student)
        base_flops, base_params = tp.utils.count_ops_and_params(student, inputs)

        with torch.inference_mode(False):
            importance = _importance(tp, cfg)
            traced: list = []  # the outputs of torch-pruning's tracing forward: which nodes give them
            pruner = tp.pruner.BasePruner(
                student, inputs, importance=importance, pruning_ratio=cfg.ratio, ignored_layers=ignored,
                num_heads={lin: h.count for h in heads for lin in (h.q, h.k, h.v)},
                prune_num_heads=cfg.heads and bool(heads), prune_head_dims=not (cfg.heads and bool(heads)),
                head_pruning_ratio=cfg.ratio, output_transform=lambda out: traced.append(out) or out,
            )
            outputs = _output_nodes(pruner.DG, traced[0])
            if cfg.criterion == "taylor":
                gradient_source = _accumulate_gradients(student, ctx, cfg)
            pruned_groups = skipped = 0
            for group in pruner.step(interactive=True):
                if _changes_an_output(pruner.DG, group, outputs):
                    skipped += 1  # an output's shape is part of the answer
                    continue
                group.prune()
                pruned_groups += 1
            student.zero_grad(set_to_none=True)
        _fix_head_attributes(heads, pruner)
        names = {m: _path_of(name) for name, m in student.named_modules()}
        flops, params = tp.utils.count_ops_and_params(student, inputs)
        if pruned_groups == 0 or flops >= base_flops:
            raise Unsupported(f"nothing to prune: every prunable group ({skipped}) feeds a model output or is kept")
        with torch.inference_mode(False), torch.no_grad():
            got = _float_outputs(student(*inputs))
        if [t.shape for t in got] != [t.shape for t in want]:
            raise Unsupported("pruning changed an output's shape: "
                              f"{[tuple(t.shape) for t in want]} became {[tuple(t.shape) for t in got]}")
        recovery = _recover(student, teacher, ctx, cfg)
        notes: dict[str, Any] = {
            "criterion": cfg.criterion, "ratio": cfg.ratio,
            "flops_before": int(base_flops), "flops_after": int(flops),
            "params_before": int(base_params), "params_after": int(params),
            "flops_removed": round(1 - flops / base_flops, 4),
            "groups_pruned": pruned_groups, "groups_left_for_outputs": skipped,
            "heads": {names[h.owner]: [h.count, int(pruner.num_heads.get(h.q, h.count))] for h in heads},
            "recovery": recovery, "kept": list(cfg.keep),
        }
        if cfg.criterion == "taylor":
            notes["taylor_gradients_from"] = gradient_source
        return Artifact("torch", student.eval(), compute_dtype=model.compute_dtype, approximate=True, notes=notes)


# -- what is prunable -----------------------------------------------------------------------------


def _has_prunable_layers(module: torch.nn.Module) -> bool:
    return any(isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)) for m in module.modules())


def _kept_modules(module: torch.nn.Module, keep: tuple[str, ...]) -> list[torch.nn.Module]:
    """The modules named in `keep`, found by their path in the user's model (the FlatIO wrapper
    that hone puts around it adds a prefix that users never see)."""
    by_path = {_path_of(name): m for name, m in module.named_modules()}
    missing = [k for k in keep if k not in by_path]
    if missing:
        raise InputError(f"no module(s) {missing} to keep unpruned", hint="name them by their path, e.g. encoder.layer.0.attention")
    return [by_path[k] for k in keep]


def _path_of(name: str) -> str:
    return name.removeprefix("module.")


@dataclasses.dataclass(frozen=True)
class _Heads:
    """One attention module's q, k, v projections and its head count before pruning."""

    owner: torch.nn.Module
    q: torch.nn.Linear
    k: torch.nn.Linear
    v: torch.nn.Linear
    count: int


def _attention_heads(module: torch.nn.Module) -> list[_Heads]:
    """Every attention module that names its q, k, v projections and its head count in one of
    the common ways (transformers' and most hand-written ones). torch.nn.MultiheadAttention is
    handled by torch-pruning itself."""
    found = []
    for m in module.modules():
        count = next((getattr(m, a) for a in HEAD_COUNT_ATTRS if isinstance(getattr(m, a, None), int)), None)
        if not count:
            continue
        for names in QKV_NAMES:
            layers = [getattr(m, n, None) for n in names]
            if all(isinstance(x, torch.nn.Linear) for x in layers) and all(x.out_features % count == 0 for x in layers):
                found.append(_Heads(m, *layers, count))
                break
    return found


def _fix_head_attributes(heads: list[_Heads], pruner) -> None:
    """After whole heads are gone, the attention module's own counts must follow, for code that
    reshapes with them (transformers reshapes with -1 heads, older code with the count)."""
    for h in heads:
        after = int(pruner.num_heads.get(h.q, h.count))
        for attr in HEAD_COUNT_ATTRS:
            if isinstance(getattr(h.owner, attr, None), int):
                setattr(h.owner, attr, after)
        for attr in ALL_HEADS_ATTRS:
            if isinstance(getattr(h.owner, attr, None), int):
                setattr(h.owner, attr, h.q.out_features)
        for attr in HEAD_WIDTH_ATTRS:
            if isinstance(getattr(h.owner, attr, None), int) and after:
                setattr(h.owner, attr, h.q.out_features // after)


def _output_nodes(graph, outputs) -> set:
    """The dependency graph's nodes that give the model's outputs: an op torch-pruning made for
    an output that no module returns, or the module whose result is returned as it is."""
    import torch_pruning as tp

    roots = {t.grad_fn for t in _float_outputs(outputs) if t.grad_fn is not None}
    return {node for node in graph.module2node.values()
            if node.type == tp.ops.OPTYPE.OUTPUT or node.grad_fn in roots}


def _changes_an_output(graph, group, outputs: set) -> bool:
    """Whether pruning this group would change the shape of a model output: it prunes the
    channels an output node gives, not only the inputs a last layer takes (a norm's or an
    elementwise op's one pruning function counts as both)."""
    return any(dep.target in outputs and graph.is_out_channel_pruning_fn(dep.handler) for dep, _ in group)


def _float_outputs(outputs) -> list[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)
    return [t for t in outputs if isinstance(t, torch.Tensor) and t.is_floating_point()]


# -- importance -----------------------------------------------------------------------------------


def _importance(tp, cfg: StructuredPruneConfig):
    if cfg.criterion == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if cfg.criterion == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    if cfg.criterion == "taylor":
        return tp.importance.TaylorImportance()
    torch.manual_seed(cfg.seed)  # the control: which channels go is chance, reproducibly
    return tp.importance.RandomImportance()


def _accumulate_gradients(module: torch.nn.Module, ctx: BuildContext, cfg: StructuredPruneConfig) -> str:
    """Gradients for the Taylor criterion (|w * dL/dw|): of the workload's train loss where it
    has a train step, else of the outputs' energy (sum of squares / 2) on the calibration
    inputs, which ranks a channel by how much of the output it carries (the distillation loss
    would be zero on the unpruned model, and so would its gradient)."""
    module.zero_grad(set_to_none=True)
    with torch.enable_grad():
        if ctx.train is not None:
            batch = min(cfg.batch_size, len(ctx.train))
            for inputs, labels in shuffled_batches(ctx.train.samples, ctx.train.labels, ctx.input_names, batch, 4, cfg.seed):
                ctx.train.step(module, inputs, labels).backward()
            return "the workload's train step (4 batches)"
        for inputs in ctx.calibration_batches()[:4]:
            sum(0.5 * t.float().pow(2).sum() for t in _float_outputs(module(*inputs))).backward()
        return "the outputs' energy on calibration inputs"


# -- recovery -------------------------------------------------------------------------------------


def _recover(student: torch.nn.Module, teacher: torch.nn.Module, ctx: BuildContext, cfg: StructuredPruneConfig) -> dict[str, Any]:
    """A short fine-tune of the pruned model, bounded by steps and seconds: the workload's train
    step, or distillation (MSE on the outputs, each scaled by the fp32 output's variance) from
    the unpruned model. Returns what it did, for the report."""
    if cfg.recovery == "none" or cfg.recovery_steps == 0 or cfg.recovery_s == 0:
        return {"method": "none"}
    params = [p for p in student.parameters() if p.is_floating_point()]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    losses: list[float] = []
    start = time.perf_counter()
    if ctx.train is not None:
        method = "train step"
        batch = min(cfg.batch_size, len(ctx.train))
        source = shuffled_batches(ctx.train.samples, ctx.train.labels, ctx.input_names, batch, cfg.recovery_steps, cfg.seed)
        loss_of = lambda inputs, labels: ctx.train.step(student, inputs, labels)  # noqa: E731
        student.train()
    else:
        method = "distillation from the fp32 model"
        samples = {n: t for n, t in zip(ctx.input_names, ctx.calibration or ctx.example_inputs)}
        n = int(next(iter(samples.values())).shape[0])
        source = shuffled_batches(samples, None, ctx.input_names, min(cfg.batch_size, n), cfg.recovery_steps, cfg.seed)

        def loss_of(inputs, labels):
            with torch.no_grad():
                target = _float_outputs(teacher(*inputs))
            got = _float_outputs(student(*inputs))
            return sum(torch.nn.functional.mse_loss(g.float(), t.float()) / (t.float().var() + 1e-12)
                       for g, t in zip(got, target))
    with torch.inference_mode(False), torch.enable_grad():
        for step, (inputs, labels) in enumerate(source):
            loss = loss_of(inputs, labels)
            losses.append(checked_loss(loss, step, "pruning recovery", cfg.lr))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if time.perf_counter() - start >= cfg.recovery_s:
                break
    student.eval()
    for p in params:
        p.requires_grad_(False)
    tail = losses[-LOSS_WINDOW:]
    return {"method": method, "steps": len(losses), "seconds": round(time.perf_counter() - start, 2),
            "initial_loss": round(losses[0], 6) if losses else None,
            "final_loss": round(sum(tail) / len(tail), 6) if tail else None}
