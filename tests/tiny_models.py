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


class TimeMajorRecognizer(torch.nn.Module):
    """A conv + bidirectional LSTM + CTC-style head, laid out as CTC losses want it: logits
    time-major (T, B, C), `nn.LSTM`'s default (batch_first=False). It also returns a per-model
    constant (a blank-symbol prior, no batch axis). The projection before the head has one
    outlier channel (always ~1000, the head reads it with a tiny weight), so per-tensor int8 of
    the head's input rounds every other channel to zero and the decodes collapse: a harmful
    quantization in miniature, while the float model decodes varied sequences."""

    def __init__(self, height: int = 8, classes: int = 6, hidden: int = 16):
        super().__init__()
        torch.manual_seed(0)
        self.cnn = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3, stride=(2, 1), padding=1), torch.nn.ReLU(),
        )
        self.rnn = torch.nn.LSTM(8 * (height // 2), hidden, bidirectional=True)
        self.proj = torch.nn.Linear(2 * hidden, 2 * hidden)
        self.head = torch.nn.Linear(2 * hidden, classes)
        self.register_buffer("blank_prior", torch.linspace(0.5, 0.1, classes))
        with torch.no_grad():
            self.proj.weight[0].zero_()
            self.proj.bias[0] = 1000.0
            self.head.weight[:, 0] = 1e-4
            self.head.weight[:, 1:] *= 8.0  # sharp decisions: float decodes are stable

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.cnn(image)  # (B, 8, H/2, W)
        b, c, h, w = features.shape
        sequence = features.permute(3, 0, 1, 2).reshape(w, b, c * h)  # (T = W, B, features)
        hidden, _ = self.rnn(sequence)
        logits = self.head(torch.relu(self.proj(hidden)))
        return {"logits": logits.log_softmax(-1), "blank_prior": self.blank_prior}


def ctc_greedy_decode(logits: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best path per sample of time-major (T, N, C) log-probabilities: argmax along C, repeats
    merged, blanks dropped."""
    best = logits.argmax(-1).T  # (N, T)
    decoded = []
    for row in best.tolist():
        merged = [s for i, s in enumerate(row) if i == 0 or s != row[i - 1]]
        decoded.append([s for s in merged if s != blank])
    return decoded


def sequence_accuracy(outputs, reference, labels) -> float:
    """Share of samples whose greedy CTC decode (along the time axis, dim 0) is the label
    sequence (labels: (N, L) padded with -1). Takes the outputs as the model lays them out."""
    decoded = ctc_greedy_decode(outputs["logits"])
    expected = [[s for s in row if s >= 0] for row in labels.tolist()]
    return sum(d == e for d, e in zip(decoded, expected)) / len(expected)


def recognizer_data(samples: int, width: int = 12, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(samples, 1, 8, width, generator=generator)


def label_sequences(decoded: list[list[int]]) -> torch.Tensor:
    """Decoded sequences as an (N, L) tensor padded with -1 (the labels of the eval set)."""
    length = max(1, max(len(d) for d in decoded))
    return torch.tensor([d + [-1] * (length - len(d)) for d in decoded])


class PrunableCNN(torch.nn.Module):
    """Two convolutions and a classifier: conv1's and conv2's output channels can be pruned
    (conv2's feed the classifier's inputs), the classifier's classes cannot (they are the output)."""

    def __init__(self, width: int = 16, classes: int = 4):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, width, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(width, width, 3, padding=1)
        self.head = torch.nn.Linear(width, classes)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(pixels))))
        return self.head(x.mean(dim=(2, 3)))


class WideMLP(torch.nn.Module):
    """A hidden layer much wider than it needs to be: pruning half of it loses a little, and a
    short distillation wins most of that back."""

    def __init__(self, features: int = 16, hidden: int = 128, outputs: int = 8):
        super().__init__()
        self.fc1 = torch.nn.Linear(features, hidden)
        self.fc2 = torch.nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def tiny_bert(layers: int = 2, hidden: int = 32, heads: int = 4):
    """A randomly initialised BertModel small enough for a unit test (no download)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=hidden * 2, max_position_embeddings=64)
    return BertModel(config).eval()


class HandWrittenAttention(torch.nn.Module):
    """Self-attention written out by hand, the way code before SDPA writes it: a fused qkv
    projection split into heads, scores = q @ k^T scaled, an optional padding mask, softmax,
    eval-mode dropout, @ v, heads merged. `variant` picks the form (the rewrite must match the
    first ones exactly and leave the last ones alone):

    "mul": scores * d^-0.5; "div": scores / sqrt(d); "prescaled": q * d^-0.5 before the matmul;
    "additive": + a float mask (0 / -1e9 from `keep`); "masked_fill": masked_fill(keep == 0,
    -inf) (True = masked); "where": where(keep, scores, -inf) (True = attend); "causal":
    masked_fill with a lower-triangular buffer; "bmm": (batch x heads, L, d) through torch.bmm;
    "wrong_dim": softmax over the query axis; "mask_after_softmax": the padding mask multiplied
    into the probabilities; "tensor_scale": scores times a learnt temperature (a tensor);
    "returns_weights": the probabilities are a second output; "finite_fill": masked_fill with
    -1e4, not -inf (SDPA's boolean mask is -inf: a fully masked row would differ);
    "scale_after_mask": (scores + additive mask) * scale, which scales the mask too.

    Inputs: x (B, L, dim) and keep (B, L), 1 where a token is real (ignored by unmasked forms)."""

    VARIANTS = ("mul", "div", "prescaled", "additive", "masked_fill", "where", "causal", "bmm",
                "wrong_dim", "mask_after_softmax", "tensor_scale", "returns_weights", "finite_fill", "scale_after_mask")

    def __init__(self, variant: str = "mul", dim: int = 32, heads: int = 4, max_len: int = 64):
        super().__init__()
        if variant not in self.VARIANTS:
            raise ValueError(variant)
        torch.manual_seed(0)
        self.variant, self.heads, self.head_dim = variant, heads, dim // heads
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.out = torch.nn.Linear(dim, dim)
        self.dropout = torch.nn.Dropout(0.1)
        self.temperature = torch.nn.Parameter(torch.tensor(self.head_dim ** -0.5))
        self.register_buffer("causal", torch.tril(torch.ones(max_len, max_len, dtype=torch.bool)))

    def forward(self, x: torch.Tensor, keep: torch.Tensor):
        import math

        b, n, dim = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        variant, scale = self.variant, self.head_dim ** -0.5
        if variant == "bmm":
            q, k, v = (t.reshape(b * self.heads, n, self.head_dim) for t in (q, k, v))
            probs = torch.bmm(q, k.transpose(1, 2)).mul(scale).softmax(dim=-1)
            heads = torch.bmm(self.dropout(probs), v).view(b, self.heads, n, self.head_dim)
            return self.out(heads.transpose(1, 2).reshape(b, n, dim))
        if variant == "prescaled":
            q = q * scale
        scores = q @ k.transpose(-2, -1)
        if variant == "div":
            scores = scores / math.sqrt(self.head_dim)
        elif variant == "tensor_scale":
            scores = scores * self.temperature
        elif variant not in ("prescaled", "scale_after_mask"):
            scores = scores * scale
        padding = keep[:, None, None, :]  # (B, 1, 1, L): broadcast over heads and queries
        if variant == "additive":
            scores = scores + (1.0 - padding.to(scores.dtype)) * -1e9
        elif variant == "scale_after_mask":
            scores = (scores + (1.0 - padding.to(scores.dtype)) * -1e9) * scale
        elif variant == "finite_fill":
            scores = scores.masked_fill(padding == 0, -1e4)
        elif variant == "masked_fill":
            scores = scores.masked_fill(padding == 0, float("-inf"))
        elif variant == "where":
            scores = torch.where(padding.bool(), scores, float("-inf"))
        elif variant == "causal":
            scores = scores.masked_fill(~self.causal[:n, :n], float("-inf"))
        probs = torch.softmax(scores, dim=-2 if variant == "wrong_dim" else -1)
        if variant == "mask_after_softmax":
            probs = probs * padding.to(probs.dtype)
        heads = self.dropout(probs) @ v
        merged = self.out(heads.transpose(1, 2).reshape(b, n, dim))
        return (merged, probs) if variant == "returns_weights" else merged


def attention_inputs(batch: int = 2, length: int = 8, dim: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """x and a padding mask where it matters: the first sample keeps only its first 5 tokens,
    the second keeps all (a mask of the wrong polarity leaves it no key: NaN rows)."""
    generator = torch.Generator().manual_seed(0)
    keep = torch.ones(batch, length, dtype=torch.int64)
    keep[0, 5:] = 0
    return torch.randn(batch, length, dim, generator=generator), keep


class HalfDeadMLP(torch.nn.Module):
    """Ten hidden units, five of them carrying almost nothing: pruning up to half the layer
    costs no answers, pruning 80 % must cut live units (the accuracy back-off's test case)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = torch.nn.Linear(16, 10)
        self.fc2 = torch.nn.Linear(10, 4)
        with torch.no_grad():
            self.fc1.weight[5:] *= 1e-3
            self.fc1.bias[5:] = 0.0
            self.fc2.weight[:, 5:] *= 1e-3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))
