"""channels_last: NHWC memory format for convolution nets; oneDNN and cuDNN run their fastest
convolution kernels in it. Inputs are converted inside the call, so the timing includes what a
user feeding NCHW tensors would pay."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hone.config import NoConfig
from hone.passes.base import Pass
from hone.plugin import Artifact, BuildContext, Variant

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload


class ChannelsLastModule(torch.nn.Module):
    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module.to(memory_format=torch.channels_last)

    def forward(self, *args: torch.Tensor):
        args = tuple(a.contiguous(memory_format=torch.channels_last) if a.dim() == 4 else a for a in args)
        return self.module(*args)


class ChannelsLast(Pass[NoConfig]):
    name = "channels_last"
    description = "NHWC memory format for 4-D (image) inputs and convolution weights"
    devices = ("cpu", "cuda")
    stage = "layout"

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if workload is not None and not workload.has_4d_float_input:
            return []  # nothing to re-layout for token or vector inputs
        # The layout is a trait: a later step that does not keep it (a converter) loses it.
        return [Variant(NoConfig(), "channels-last", "4-D image inputs", gives=frozenset({"channels_last"}))]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        wrapped = ChannelsLastModule(model.module)
        return Artifact("torch", wrapped, compute_dtype=model.compute_dtype, notes={"memory_format": "channels_last"})
