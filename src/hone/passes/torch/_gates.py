"""Capability gates that several torch passes share: a CUDA GPU of at least some compute
capability (fp8 GEMMs, 2:4 sparse tensor cores)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hone.hardware import Hardware


def cuda_capability_gate(hw: "Hardware", device: str, minimum: tuple[int, int], needs: str) -> str | None:
    """None when `device` is a CUDA GPU of compute capability `minimum` or above, else why not:
    `needs` (what the feature needs, in words) and what this run has instead."""
    kind, _, index = device.partition(":")
    if kind != "cuda":
        return f"{needs}; this run is on {device}"
    gpus = hw.gpus
    gpu = gpus[int(index)] if index.isdigit() and int(index) < len(gpus) else (gpus[0] if gpus else None)
    if gpu is None:
        return f"{needs}; this machine reports no CUDA GPU"
    if tuple(gpu.capability) < minimum:
        major, minor = gpu.capability
        return f"{needs}; {gpu.name} has compute capability {major}.{minor}"
    return None


def cuda_capability_now(device: str, minimum: tuple[int, int], needs: str) -> str | None:
    """The same gate at build time, from torch itself (a worker has no probe): None when
    `device` is a CUDA GPU of compute capability `minimum` or above, else why not."""
    import torch

    if not device.startswith("cuda"):
        return f"{needs}; this run is on {device}"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < minimum:
        return f"{needs}; {torch.cuda.get_device_name(device)} has compute capability {major}.{minor}"
    return None
