"""Peak memory of a candidate: resident set sampled while it builds and runs; allocator peak on CUDA.

The process-wide high-water mark (ru_maxrss) is set by loading the workload, which is the same
for every candidate, so it would report one number for all of them. A sampler started after
the load sees what the candidate itself holds: the model, its build products, its activations.
"""

from __future__ import annotations

import threading

import psutil

SAMPLE_INTERVAL_S = 0.005


class RssSampler:
    """Polls this process's RSS on a daemon thread; `peak_bytes` is the largest seen."""

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S):
        self.interval_s = interval_s
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.peak_bytes = 0

    def _sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> "RssSampler":
        self._sample()
        self._thread = threading.Thread(target=self._run, name="hone-rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        return False


def reset_device_peak(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def device_peak_bytes(device: str) -> int | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return int(torch.cuda.max_memory_allocated(device))
