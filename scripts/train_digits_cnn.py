"""Train the built-in digits-cnn and write src/hone/models/_data/digits_cnn.safetensors.

Deterministic (seeded, CPU, single thread for reproducible reductions); about ten seconds.
Trains on the training split only; prints held-out top-1. Run: python scripts/train_digits_cnn.py
"""

from __future__ import annotations

import torch
from safetensors.torch import save_file

from hone.models.digits import WEIGHTS_PATH, DigitsCNN, digits_split

EPOCHS = 40
BATCH_SIZE = 64
LEARNING_RATE = 1e-3


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    train_x, train_y, test_x, test_y = digits_split()
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    shuffle = torch.Generator().manual_seed(0)
    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(train_x), generator=shuffle)
        for start in range(0, len(order), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            optimizer.zero_grad()
            loss = loss_fn(model(train_x[idx]), train_y[idx])
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        top1 = (model(test_x).argmax(dim=1) == test_y).float().mean().item()
    WEIGHTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    # contiguous clones: safetensors refuses shared or non-contiguous storage
    save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}, str(WEIGHTS_PATH))
    print(f"held-out top-1: {top1:.4f} ({len(test_y)} images); wrote {WEIGHTS_PATH}")


if __name__ == "__main__":
    main()
