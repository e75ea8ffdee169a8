"""Unstructured magnitude sparsity: the smallest weights of every Linear and Conv set to zero.

Reported honestly: dense kernels multiply a zero like any other value, so the model does the
same FLOPs and reads the same bytes, and no runtime here is expected to run it faster. The
pass exists so that this is measured, not assumed (docs/BENCHMARKS.md, "Pruning"), and as the
first step of stacks whose later steps could use the zeros (a compressing export). The
zeros are real: the notes count them, read back from the weights.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING

import torch

from hone.config import Config
from hone.errors import InputError, Unsupported
from hone.passes.base import Pass
from hone.plugin import Artifact, BuildContext, Variant

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

LAYERS = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
SPARSITIES = (0.5, 0.8)


@dataclasses.dataclass(frozen=True)
class MagnitudeSparsityConfig(Config):
    sparsity: float = 0.5  # share of each layer's weights set to zero, the smallest by magnitude

    def validate(self) -> None:
        if not 0 < self.sparsity < 1:
            raise InputError(f"sparsity must be in (0, 1), not {self.sparsity}")


class MagnitudeSparsity(Pass[MagnitudeSparsityConfig]):
    name = "magnitude_sparsity"
    Config = MagnitudeSparsityConfig
    description = "zero the smallest weights of each layer (unstructured; dense kernels gain nothing)"
    devices = ("cpu", "cuda")
    stage = "prune"
    approximates = True

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if workload is not None and workload.eval is None:
            return []  # it changes the answers: only a task metric can accept it
        # On request only (--recipe sparse-50): no kernel here skips the zeros, so the default
        # plan would spend a candidate to find nothing.
        return [Variant(MagnitudeSparsityConfig(s), f"sparse-{round(s * 100)}",
                        f"{round(s * 100)} % of each layer's weights zeroed by magnitude (unstructured)",
                        cost=0.2, alone=False, stack=False) for s in SPARSITIES]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        sparsity = self.config.sparsity
        module = copy.deepcopy(model.module)
        zeros = total = layers = 0
        with torch.no_grad():
            for m in module.modules():
                if not isinstance(m, LAYERS):
                    continue
                w = m.weight
                k = int(w.numel() * sparsity)
                if k == 0:
                    continue
                threshold = w.abs().flatten().kthvalue(k).values
                w.masked_fill_(w.abs() <= threshold, 0.0)
                zeros += int((w == 0).sum())
                total += w.numel()
                layers += 1
        if layers == 0:
            raise Unsupported("no Linear or Conv layer to sparsify")
        notes = {"sparsity": sparsity, "zeroed_share": round(zeros / total, 4), "layers": layers,
                 "kernels": "dense: zeros are multiplied like any value"}
        return Artifact("torch", module, compute_dtype=model.compute_dtype, notes=notes)
