"""Timelines: a Chrome trace from torch.profiler, NVTX ranges for Nsight, the nsys command.

torch is imported inside the functions: importing this module must stay cheap and must never
initialise CUDA (tests/test_lean_import.py).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterator

DEFAULT_ITERATIONS = 3  # enough to see the steady state next to the first profiled call
DEFAULT_WARMUP = 1  # calls before profiling: oneDNN primitive creation, autotuning, allocator growth
NSYS_TRACE = "cuda,nvtx,osrt"  # kernels, our stage ranges, and OS runtime calls (sync waits, I/O)
STEP_LABEL = "hone.forward"


def export_chrome_trace(
    forward: Callable[[], object],
    path: Path,
    *,
    device: str = "cpu",
    iterations: int = DEFAULT_ITERATIONS,
    warmup: int = DEFAULT_WARMUP,
) -> Path:
    """Profile `iterations` calls of forward() and write a Chrome trace (Perfetto, chrome://tracing).

    CUDA activity is recorded only for a CUDA device; the device is synchronised after each call
    so every kernel lands inside the step range that launched it.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    on_cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    for _ in range(warmup):
        forward()
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    with profile(activities=activities, record_shapes=True) as prof:
        for step in range(iterations):
            with record_function(f"{STEP_LABEL} #{step}"):
                forward()
                sync()
    path.parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(path))
    return path


@contextlib.contextmanager
def nvtx_range(name: str) -> Iterator[None]:
    """An NVTX range around a stage, visible in Nsight Systems; a no-op unless the caller has
    already initialised CUDA (pushing a range must never be what creates a CUDA context)."""
    torch = sys.modules.get("torch")  # not imported by the caller: CUDA cannot be initialised
    if torch is None or not torch.cuda.is_initialized():
        yield
        return
    torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        torch.cuda.nvtx.range_pop()


def nsys_command(argv: list[str], output: Path) -> list[str] | None:
    """`nsys profile ... <argv>` writing `output` (.nsys-rep), or None when nsys is not installed."""
    nsys = shutil.which("nsys")
    if nsys is None:
        return None
    return [nsys, "profile", f"--trace={NSYS_TRACE}", "-o", str(output), "--force-overwrite", "true", *argv]
