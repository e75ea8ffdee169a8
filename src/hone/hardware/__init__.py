"""This machine: ISA and cores (probe), measured peaks (peaks), cached per machine fingerprint.

    hw = hone.hardware.probe()            # seconds the first time on a machine, then cached
    hw.has_bf16, hw.default_threads, hw.peaks.fp32_gflops

Importing this package imports neither torch nor CUDA; GPU facts and peaks come from a child.
Note: `hone.hardware.probe` is the function; the module is sys.modules["hone.hardware.probe"].
"""

from __future__ import annotations

from hone.hardware.peaks import Peaks
from hone.hardware.probe import GpuInfo, Hardware, default_threads, probe

__all__ = ["Hardware", "GpuInfo", "Peaks", "probe", "default_threads"]
