"""Peak memory of a candidate: the resident set's high-water mark while it builds and runs;
allocator peak on CUDA.

The process-wide high-water mark is set by loading the workload, the same for every candidate,
so it is reset first: on Linux, writing "5" to /proc/self/clear_refs resets VmHWM to the current
RSS, and VmHWM then is the peak of what the candidate itself holds (the model, its build
products, its activations), with nothing running beside it. Elsewhere a daemon thread polls RSS
every 5 ms; that thread takes the GIL and a core from what is being timed (measured: eager
MiniLM ran slower under it on 2 cores), so it is only the fallback.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import psutil

SAMPLE_INTERVAL_S = 0.005
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")
_HWM = re.compile(r"^VmHWM:\s+(\d+)\s+kB", re.MULTILINE)


def _high_water_kib() -> int | None:
    try:
        found = _HWM.search(_STATUS.read_text())
    except OSError:
        return None
    return int(found.group(1)) if found else None


def _reset_high_water() -> bool:
    """Reset this process's peak RSS to its current RSS; False where the kernel does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _high_water_kib() is not None


class RssSampler:
    """Peak RSS of this process over the `with` block (`peak_bytes`): the kernel's high-water
    mark where it can be reset, else a polling thread. A sampler inside another polls: resetting
    the mark would lose what the outer one saw before."""

    _resetting = 0  # samplers using the kernel's mark now: at most one

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S):
        self.interval_s = interval_s
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._kernel = False
        self.peak_bytes = 0

    def _sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> "RssSampler":
        self._sample()
        self._kernel = RssSampler._resetting == 0 and _reset_high_water()
        if self._kernel:
            RssSampler._resetting += 1
        else:
            self._thread = threading.Thread(target=self._run, name="hone-rss-sampler", daemon=True)
            self._thread.start()
        return self

    def so_far(self) -> int:
        """The peak since the block began, read without ending it."""
        if self._kernel:
            peak = _high_water_kib()
            return max(self.peak_bytes, peak * 1024) if peak is not None else self.peak_bytes
        self._sample()
        return self.peak_bytes

    def __exit__(self, *exc) -> bool:
        if self._kernel:
            RssSampler._resetting -= 1
            peak = _high_water_kib()
            if peak is not None:
                self.peak_bytes = max(self.peak_bytes, peak * 1024)
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
