"""Built-in task metrics. Each takes the candidate's outputs over the whole eval set, the eager
fp32 reference outputs over the same set, and the labels, and returns one score."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hone.errors import InputError

Outputs = dict[str, torch.Tensor]


def top1(outputs: Outputs, reference: Outputs, labels: torch.Tensor | None) -> float:
    """Share of samples whose highest logit (first output) is the label."""
    if labels is None:
        raise InputError("metric top1 needs labels in the eval set")
    logits = next(iter(outputs.values()))
    return float((logits.float().argmax(dim=-1) == labels).float().mean())


def top1_agreement(outputs: Outputs, reference: Outputs, labels: torch.Tensor | None) -> float:
    """Share of samples whose highest logit (first output) is the fp32 model's: accuracy without
    labels, for a classifier that has none at hand."""
    out, ref = next(iter(outputs.values())), next(iter(reference.values()))
    return float((out.float().argmax(dim=-1) == ref.float().argmax(dim=-1)).float().mean())


def embedding_cosine(outputs: Outputs, reference: Outputs, labels: torch.Tensor | None) -> float:
    """Mean cosine similarity of each sample's embedding (first output) to its fp32 embedding."""
    out = next(iter(outputs.values())).double().flatten(1)
    ref = next(iter(reference.values())).double().flatten(1)
    return float(torch.nn.functional.cosine_similarity(out, ref, dim=1).mean())


def neighbour_agreement(outputs: Outputs, reference: Outputs, labels: torch.Tensor | None) -> float:
    """Share of samples whose nearest other sample (cosine of the first output) is the same as
    under fp32: what a semantic search over these embeddings would return, kept or not."""
    def nearest(x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.normalize(x.double().flatten(1), dim=1)
        similarity = x @ x.T
        similarity.fill_diagonal_(-2.0)  # a sample is not its own neighbour
        return similarity.argmax(dim=1)

    out, ref = next(iter(outputs.values())), next(iter(reference.values()))
    if len(out) < 2:
        raise InputError("neighbour_agreement needs at least two samples in the eval set")
    return float((nearest(out) == nearest(ref)).double().mean())


METRICS: dict[str, Callable[[Outputs, Outputs, "torch.Tensor | None"], float]] = {
    "top1": top1,
    "top1_agreement": top1_agreement,
    "embedding_cosine": embedding_cosine,
    "neighbour_agreement": neighbour_agreement,
}


def resolve(metric) -> Callable[[Outputs, Outputs, "torch.Tensor | None"], float]:
    if callable(metric):
        return metric
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}", hint=f"built-in: {', '.join(METRICS)}, or a callable")
    return METRICS[metric]
