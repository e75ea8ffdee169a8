"""Small importable models for tests (workers unpickle them by module path)."""

from __future__ import annotations

import torch


class TinyMLP(torch.nn.Module):
    def __init__(self, features: int = 32, hidden: int = 64, classes: int = 10):
        super().__init__()
        self.fc1 = torch.nn.Linear(features, hidden)
        self.fc2 = torch.nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class TinyConv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.head = torch.nn.Linear(8, 4)

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        features = torch.relu(self.conv(pixels)).mean(dim=(2, 3))
        return {"logits": self.head(features), "features": features}


def tiny_mlp(batch: int = 4) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return TinyMLP().eval(), torch.randn(batch, 32)
