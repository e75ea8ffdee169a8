"""bf16 autocast: matmuls and convolutions in bfloat16, reductions kept in fp32 by autocast's
op lists. Worth it where the hardware has bf16 units (avx512_bf16/AMX on CPU, Ampere+ GPUs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hone.config import NoConfig
from hone.passes.base import Pass
from hone.plugin import Artifact, BuildContext
from hone.search.recipe import Recipe, Step

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload


class AutocastModule(torch.nn.Module):
    def __init__(self, module: torch.nn.Module, device_type: str, dtype: torch.dtype):
        super().__init__()
        self.module = module
        self.device_type = device_type
        self.dtype = dtype

    def forward(self, *args: torch.Tensor):
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.module(*args)


class Bf16Autocast(Pass):
    name = "bf16_autocast"
    description = "run matmuls/convolutions in bfloat16 under torch.autocast"
    devices = ("cpu", "cuda")

    @classmethod
    def unavailable_here(cls, hw: "Hardware", device: str) -> str | None:
        if device == "cpu" and not hw.has_bf16:
            return "this CPU has no bf16 units (avx512_bf16 or AMX); bf16 would be emulated and slower"
        if device.startswith("cuda") and not any(g.capability >= (8, 0) for g in hw.gpus):
            return "bf16 needs a GPU of compute capability 8.0 or newer"
        return None

    @classmethod
    def propose(cls, workload: "Workload", hw: "Hardware", device: str) -> list[Recipe]:
        steps = (Step(cls.name, cls.Config()),)
        return [Recipe("eager-bf16", steps, Step("eager", NoConfig()), "compute in bf16", "bfloat16")]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        device_type = "cuda" if ctx.device.startswith("cuda") else "cpu"
        wrapped = AutocastModule(model.module, device_type, torch.bfloat16)
        return Artifact("torch", wrapped, compute_dtype="bfloat16", notes={**model.notes, "autocast": "bfloat16"})
