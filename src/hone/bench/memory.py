"""Peak memory of the worker process: resident set on CPU, allocator peak on CUDA."""

from __future__ import annotations

import resource
import sys


def peak_rss_bytes() -> int:
    """Largest resident set this process has had (model load, build and runs included)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB


def reset_device_peak(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def device_peak_bytes(device: str) -> int | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return int(torch.cuda.max_memory_allocated(device))
