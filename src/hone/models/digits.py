"""Built-in "digits-cnn": a small CNN trained by us on scikit-learn's bundled 8x8 digits.

It is the one built-in with a real task metric (held-out top-1), so a quantized candidate can be
judged on accuracy rather than on tensor closeness. The weights are trained by
scripts/train_digits_cnn.py on the training split only and ship as safetensors in the package.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from hone._optional import require
from hone.models.workload import EvalSet, InputSet, TrainSet, Workload

WEIGHTS_PATH = Path(__file__).parent / "_data" / "digits_cnn.safetensors"
DEFAULT_BATCH_SIZES = (1, 64)
INPUT_NAME = "pixels"
# The split is part of the model's definition: the training script and the loader share it, so
# the eval set is exactly the data the weights never saw.
TEST_SIZE = 0.2
SPLIT_SEED = 0


class DigitsCNN(nn.Module):
    """(N, 1, 8, 8) float32 in [0, 1] -> (N, 10) logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(pixels))


CALIBRATION_SAMPLES = 256


def digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x, train_y, test_x, test_y): images (N, 1, 8, 8) float32 in [0, 1], labels int64."""
    require("sklearn", "models")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()  # bundled with scikit-learn: no download
    images = (digits.images / 16.0).astype("float32").reshape(-1, 1, 8, 8)
    labels = digits.target.astype("int64")
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=labels
    )
    return (
        torch.from_numpy(train_x),
        torch.from_numpy(train_y),
        torch.from_numpy(test_x),
        torch.from_numpy(test_y),
    )


def cross_entropy_step(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], labels: torch.Tensor | None) -> torch.Tensor:
    """The built-in train step for QAT: the loss the model was trained with."""
    (logits,) = model(*inputs)[:1]
    return torch.nn.functional.cross_entropy(logits, labels)


def load_digits_cnn(batch_sizes: tuple[int, ...] | None = None) -> Workload:
    from safetensors.torch import load_file

    model = DigitsCNN()
    model.load_state_dict(load_file(str(WEIGHTS_PATH)), strict=True)
    model.eval()
    train_x, train_y, test_x, test_y = digits_split()
    input_sets = [InputSet(f"bs{b}", {INPUT_NAME: test_x[:b].clone()}) for b in batch_sizes or DEFAULT_BATCH_SIZES]
    eval_set = EvalSet(
        samples={INPUT_NAME: test_x},
        metric="top1",
        labels=test_y,
        description=f"top-1 accuracy on the {len(test_y)} held-out scikit-learn digits (never trained on)",
    )
    return Workload(
        name="digits-cnn",
        module=model,
        input_sets=input_sets,
        eval=eval_set,
        calibration={INPUT_NAME: train_x[:CALIBRATION_SAMPLES]},
        calibration_description=f"the first {CALIBRATION_SAMPLES} images of the training split (never the held-out split)",
        train=TrainSet(
            samples={INPUT_NAME: train_x},
            labels=train_y,
            step=cross_entropy_step,
            description=f"the {len(train_y)} training images with cross-entropy (for QAT)",
        ),
        source="digits-cnn",
        task="image-classification",
        description="small CNN (2 conv + 2 linear, 8x8 grayscale digits), trained by hone",
    )
