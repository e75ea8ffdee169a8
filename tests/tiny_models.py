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


class OutlierMLP(torch.nn.Module):
    """fc2's input has one channel that is always ~1000 (the outlier features of large
    transformers, in miniature): any per-tensor int8 rounding of that input crushes every other
    channel to zero, while fc1 and fc3 quantize harmlessly. The one layer to keep in float is
    fc2, so a fallback that finds it restores the answers."""

    def __init__(self, features: int = 16, hidden: int = 64, classes: int = 8):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = torch.nn.Linear(features, hidden)
        self.fc2 = torch.nn.Linear(hidden, hidden)
        self.fc3 = torch.nn.Linear(hidden, classes)
        with torch.no_grad():
            self.fc1.weight[0].zero_()
            self.fc1.bias[0] = 1000.0
            self.fc2.weight[:, 0] = 1e-3  # the outlier adds a constant ~1 to every fc2 unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def outlier_data(samples: int = 256, features: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(samples, features, generator=generator)


class BatchBranch(torch.nn.Module):
    """Shape-dependent control flow: a trace at batch 4 records only the `x + 1` branch, and
    torch.export with a dynamic batch cannot decide the branch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 4:
            return x * 2
        return x + 1
