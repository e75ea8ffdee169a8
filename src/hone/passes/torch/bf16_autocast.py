"""bf16 autocast: matmuls and convolutions in bfloat16, reductions kept in fp32 by autocast's
op lists. Worth it where the hardware has bf16 units (avx512_bf16/AMX on CPU, Ampere+ GPUs).

On a CPU without them PyTorch still runs bf16 (converting to fp32 around each kernel), and on a
GPU older than Ampere CUDA emulates it (torch.cuda.is_bf16_supported(including_emulation=True)):
usually slower, but measured rather than refused, since that is a guess about speed, not a fact
about what can run. The profile's advice puts it first only where bf16 units exist."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hone.config import NoConfig
from hone.passes.base import Pass
from hone.plugin import Artifact, BuildContext, Claim, Variant

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


class Bf16Autocast(Pass[NoConfig]):
    name = "bf16_autocast"
    description = "run matmuls/convolutions in bfloat16 under torch.autocast"
    devices = ("cpu", "cuda")
    stage = "precision"

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        # Pays only where memory or compute dominate: it adds casts and saves no dispatch.
        return [Variant(
            NoConfig(), "bf16", "compute in bf16", compute_dtype="bfloat16",
            addresses={"memory": Claim(0.9, "bf16 activations halve the bytes each op moves", unit="bf16"),
                       "compute": Claim(1.0, "", unit="bf16")},
            pays_for=("memory", "compute"),
        )]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        device_type = "cuda" if ctx.device.startswith("cuda") else "cpu"
        wrapped = AutocastModule(model.module, device_type, torch.bfloat16)
        return Artifact("torch", wrapped, compute_dtype="bfloat16", notes={"autocast": "bfloat16"})
