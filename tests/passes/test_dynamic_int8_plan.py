"""torch-int8-dynamic is planned only for a model that has a module it quantizes: for one with
no Linear or LSTM a worker would load the model just to find that out."""

from __future__ import annotations

import torch

from hone.passes.torch.dynamic_int8 import DynamicInt8
from hone.models.workload import InputSet, Workload
from tiny_models import TinyMLP


class ConvOnly(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x).mean(dim=(1, 2, 3))


def test_planned_for_a_model_with_linear_layers_only(hardware):
    mlp = Workload("mlp", TinyMLP().eval(), [InputSet("bs2", {"x": torch.randn(2, 32)})])
    conv = Workload("conv", ConvOnly().eval(), [InputSet("bs2", {"x": torch.randn(2, 3, 8, 8)})])
    assert [v.tag for v in DynamicInt8.variants(mlp, hardware, "cpu")] == ["torch-int8-dynamic"]
    assert DynamicInt8.variants(conv, hardware, "cpu") == []
