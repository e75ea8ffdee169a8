"""Timers: host perf_counter on CPU; CUDA events + synchronize on GPU.

A GPU call returns before its kernels finish, so timing host code around it measures the
launch, not the work: the CUDA timer records events on the stream and waits for the end event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class PerfCounterTimer:
    name = "perf_counter"

    def time_call(self, fn: Callable[[], Any]) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


class CudaEventTimer:
    name = "cuda_event"

    def __init__(self) -> None:
        import torch

        self._torch = torch
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def time_call(self, fn: Callable[[], Any]) -> float:
        torch = self._torch
        torch.cuda.synchronize()  # nothing of an earlier call may leak into this one
        self._start.record()
        fn()
        self._end.record()
        self._end.synchronize()
        return self._start.elapsed_time(self._end) / 1e3  # ms -> s


def timer_for(device: str) -> PerfCounterTimer | CudaEventTimer:
    return CudaEventTimer() if device.startswith("cuda") else PerfCounterTimer()
