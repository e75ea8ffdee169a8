"""Memory of a profiled forward: peak per stage, weight bytes, the largest tensors.

On CPU the peaks are this process's resident set (sampled while a stage runs), so they include
Python, torch and whatever else the process holds: read them as differences between stages.
On CUDA they are the caching allocator's peak allocated bytes within each stage.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

import psutil
import torch

from hone.bench.memory import RssSampler, device_peak_bytes, reset_device_peak
from hone.profiler.count import NO_TRAFFIC_OPS, OpCall, dtype_name
from hone.profiler.records import MemoryProfile, TensorSize

LARGEST_TENSORS = 10  # listed in MemoryProfile.largest


class StageRecorder:
    """Peak bytes per named stage: `mark("load")` for a point, `with stage("first call"):` for a span."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.peak_by_stage: dict[str, int] = {}

    def _cuda(self) -> bool:
        return self.device.startswith("cuda")

    def mark(self, name: str) -> None:
        if self._cuda():
            self.peak_by_stage[name] = int(torch.cuda.memory_allocated(self.device))
        else:
            self.peak_by_stage[name] = int(psutil.Process().memory_info().rss)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self._cuda():
            reset_device_peak(self.device)
            yield
            self.peak_by_stage[name] = int(device_peak_bytes(self.device) or 0)
        else:
            with RssSampler() as sampler:
                yield
            self.peak_by_stage[name] = sampler.peak_bytes


def _distinct_tensors(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Parameters and buffers, each storage once (tied embeddings are one tensor)."""
    seen: set[int] = set()
    out = []
    named = list(module.named_parameters(remove_duplicate=False)) + list(module.named_buffers(remove_duplicate=False))
    for name, t in named:
        key = t.data_ptr() if t.numel() else id(t)
        if key not in seen:
            seen.add(key)
            out.append((name, t))
    return out


def weights_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for _, t in _distinct_tensors(module))


def weight_sizes(module: torch.nn.Module) -> list[TensorSize]:
    return [
        TensorSize(name, "weight", t.numel() * t.element_size(), tuple(t.shape), dtype_name(t.dtype))
        for name, t in _distinct_tensors(module)
    ]


def activation_sizes(calls: list[OpCall]) -> list[TensorSize]:
    """The largest output of each op call; views are left out (they alias memory counted elsewhere)."""
    seen: Counter[str] = Counter()
    out = []
    for call in calls:
        seen[call.name] += 1
        if call.name in NO_TRAFFIC_OPS or not call.out_bytes:
            continue
        name = f"activation {call.name} #{seen[call.name]}"
        out.append(TensorSize(name, "activation", call.out_bytes, call.out_shape, call.out_dtype))
    return out


def largest_tensors(module: torch.nn.Module, calls: list[OpCall], n: int = LARGEST_TENSORS) -> tuple[TensorSize, ...]:
    everything = weight_sizes(module) + activation_sizes(calls)
    return tuple(sorted(everything, key=lambda t: t.bytes, reverse=True)[:n])


def memory_profile(recorder: StageRecorder, module: torch.nn.Module, calls: list[OpCall]) -> MemoryProfile:
    return MemoryProfile(dict(recorder.peak_by_stage), weights_bytes(module), largest_tensors(module, calls))
