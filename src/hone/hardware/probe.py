"""What this machine is: CPU model and ISA flags, cores, memory, GPUs, and a fingerprint.

CPU facts come from /proc/cpuinfo, sysfs and psutil in this process. GPU facts and measured
peaks come from a child process (hone.hardware.peaks): initialising CUDA here would cost
seconds and make forked workers unable to use the GPU. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import psutil

from hone.hardware import peaks as _peaks
from hone.hardware.peaks import Peaks

SCHEMA_VERSION = 1  # of Hardware.to_dict(); a cache file with another version is a miss
CPUINFO = Path("/proc/cpuinfo")
SYS_CPU = Path("/sys/devices/system/cpu")
# Memory limits of this container (cgroup v2, then v1); "max" or a huge number means none.
CGROUP_MEMORY_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    name: str
    capability: tuple[int, int]  # CUDA compute capability, e.g. (9, 0) for H100
    memory_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "capability": list(self.capability), "memory_bytes": self.memory_bytes}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GpuInfo":
        major, minor = data["capability"]
        return cls(name=str(data["name"]), capability=(int(major), int(minor)), memory_bytes=int(data["memory_bytes"]))


@dataclasses.dataclass(frozen=True)
class Hardware:
    cpu_name: str
    arch: str  # platform.machine(): x86_64, aarch64, ...
    physical_cores: int  # whole machine
    logical_cores: int  # whole machine
    usable_cores: int  # logical CPUs in this process's affinity mask
    flags: frozenset[str]  # /proc/cpuinfo flags (x86) or Features (arm)
    memory_bytes: int  # RAM, capped by the container's cgroup limit
    gpus: tuple[GpuInfo, ...]
    torch_version: str
    fingerprint: str  # see fingerprint()
    peaks: Peaks | None = None
    usable_physical_cores: int = 0  # physical cores within the affinity mask; 0 = unknown

    @property
    def has_avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def has_avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def has_vnni(self) -> bool:
        return bool({"avx512_vnni", "avx_vnni"} & self.flags)

    @property
    def int8_dot_saturates(self) -> bool:
        """x86 without VNNI: int8 GEMM kernels multiply u8 x s8 pairs with VPMADDUBSW, which
        adds each pair into a saturating 16-bit lane (255 * 127 * 2 > 32767), so full-range int8
        operands can clip. 7-bit weights or activations keep every pair sum in range; the int8
        recipes ask their backend for that here (ONNX Runtime's reduce_range, the x86
        quantizer's 7-bit activations, NNCF's overflow fix). VNNI (VPDPBUSD) accumulates in
        32 bits, and ARM's int8 dot products do not saturate."""
        return self.arch.lower() in ("x86_64", "amd64", "i686", "x86") and not self.has_vnni

    @property
    def has_bf16(self) -> bool:
        return bool({"avx512_bf16", "amx_bf16"} & self.flags)

    @property
    def has_amx(self) -> bool:
        return "amx_tile" in self.flags

    @property
    def has_cuda(self) -> bool:
        return bool(self.gpus)

    @property
    def default_threads(self) -> int:
        """Physical cores within the affinity mask, at least 1: SMT siblings share the FMA
        units, so a second thread per core rarely speeds up GEMM-bound inference."""
        if self.usable_physical_cores > 0:
            return self.usable_physical_cores
        return max(1, self.usable_cores * self.physical_cores // max(1, self.logical_cores))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: flags as a sorted list, GPUs and peaks as dicts."""
        data: dict[str, Any] = {"schema": SCHEMA_VERSION}
        for field in dataclasses.fields(self):
            data[field.name] = getattr(self, field.name)
        data["flags"] = sorted(self.flags)
        data["gpus"] = [gpu.to_dict() for gpu in self.gpus]
        data["peaks"] = self.peaks.to_dict() if self.peaks else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Hardware":
        return cls(
            cpu_name=str(data["cpu_name"]),
            arch=str(data["arch"]),
            physical_cores=int(data["physical_cores"]),
            logical_cores=int(data["logical_cores"]),
            usable_cores=int(data["usable_cores"]),
            flags=frozenset(data["flags"]),
            memory_bytes=int(data["memory_bytes"]),
            gpus=tuple(GpuInfo.from_dict(gpu) for gpu in data["gpus"]),
            torch_version=str(data["torch_version"]),
            fingerprint=str(data["fingerprint"]),
            peaks=Peaks.from_dict(data["peaks"]) if data.get("peaks") else None,
            usable_physical_cores=int(data.get("usable_physical_cores", 0)),
        )


def parse_cpuinfo(text: str) -> tuple[str | None, frozenset[str]]:
    """(model name, flags) of the first processor in /proc/cpuinfo text; every core agrees."""
    name: str | None = None
    flags: frozenset[str] | None = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key == "model name" and name is None:
            name = value.strip() or None
        elif key in ("flags", "features") and flags is None:  # "Features" on arm
            flags = frozenset(value.split())
        if name is not None and flags is not None:
            break
    return name, flags or frozenset()


def _cpu_name_and_flags() -> tuple[str, frozenset[str]]:
    try:
        name, flags = parse_cpuinfo(CPUINFO.read_text(encoding="utf-8", errors="replace"))
    except OSError:  # not Linux: no flags, so no ISA-specific recipe is proposed
        name, flags = None, frozenset()
    return name or platform.processor() or platform.machine() or "unknown", flags


def _affinity() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def _physical_cores_within(cpus: set[int]) -> int | None:
    """Distinct (package, core) pairs among `cpus` from sysfs topology; None when unreadable."""
    cores = set()
    for cpu in cpus:
        topology = SYS_CPU / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return None
        cores.add((package, core))
    return len(cores) or None


def _memory_bytes() -> int:
    total = psutil.virtual_memory().total
    for path in CGROUP_MEMORY_LIMITS:
        try:
            limit = int(path.read_text().strip())
        except (OSError, ValueError):  # absent, or "max"
            continue
        if 0 < limit < total:
            return limit
    return total


def _torch_version() -> str:
    # From the installed metadata: importing torch here would cost seconds for one string.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return "not installed"


_GPUS: tuple[GpuInfo, ...] | None = None


def _cpu_only_torch_loaded() -> bool:
    """Whether this process already imported torch, and that torch was built without CUDA or
    ROCm: then it sees no GPU, and asking a child would only cost its torch import. The probe
    never imports torch itself (a process that has not must stay free of it)."""
    torch = sys.modules.get("torch")
    version = getattr(torch, "version", None)
    return version is not None and not (getattr(version, "cuda", None) or getattr(version, "hip", None))


def _query_gpus() -> tuple[GpuInfo, ...]:
    """GPUs from a child process, once per process (it costs a torch import)."""
    global _GPUS
    if _GPUS is None and _cpu_only_torch_loaded():
        _GPUS = ()
    if _GPUS is None:
        raw = _peaks.query_gpus_in_child()
        try:
            _GPUS = tuple(GpuInfo.from_dict(gpu) for gpu in raw or [])
        except (TypeError, ValueError, KeyError):
            _GPUS = ()
    return _GPUS


def fingerprint(
    *,
    cpu_name: str,
    arch: str,
    physical_cores: int,
    logical_cores: int,
    usable_cores: int,
    usable_physical_cores: int,
    flags: frozenset[str],
    memory_bytes: int,
    gpus: tuple[GpuInfo, ...],
    torch_version: str,
) -> str:
    """Stable hash of what decides peaks and recipes; memory is rounded to GiB because the
    kernel's reservation moves the exact total by a few MiB between boots."""
    facts = {
        "cpu_name": cpu_name,
        "arch": arch,
        "cores": [physical_cores, logical_cores, usable_cores, usable_physical_cores],
        "flags": sorted(flags),
        "memory_gib": round(memory_bytes / 2**30),
        "gpus": [gpu.to_dict() for gpu in gpus],
        "torch_version": torch_version,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def default_threads() -> int:
    """Physical cores within this process's affinity mask, at least 1."""
    cpus = _affinity()
    physical = _physical_cores_within(cpus)
    if physical:
        return physical
    logical = psutil.cpu_count(logical=True) or len(cpus)
    return max(1, len(cpus) * (psutil.cpu_count(logical=False) or logical) // logical)


def _facts() -> Hardware:
    """Everything but the peaks."""
    cpu_name, flags = _cpu_name_and_flags()
    cpus = _affinity()
    facts: dict[str, Any] = dict(
        cpu_name=cpu_name,
        arch=platform.machine() or "unknown",
        logical_cores=psutil.cpu_count(logical=True) or len(cpus),
        usable_cores=len(cpus),
        usable_physical_cores=_physical_cores_within(cpus) or 0,
        flags=flags,
        memory_bytes=_memory_bytes(),
        gpus=_query_gpus(),
        torch_version=_torch_version(),
    )
    facts["physical_cores"] = psutil.cpu_count(logical=False) or facts["logical_cores"]
    return Hardware(**facts, fingerprint=fingerprint(**facts))


def _cached_peaks(path: Path, fingerprint_: str) -> Peaks | None:
    data = _peaks.read_cache(path)
    if not data or data.get("schema") != SCHEMA_VERSION or data.get("fingerprint") != fingerprint_:
        return None
    try:
        cached = Peaks.from_dict(data["peaks"])
    except (TypeError, ValueError, KeyError, AttributeError):  # hand-edited or truncated: a miss
        return None
    if cached.method != _peaks.PEAKS_METHOD:  # measured another way (an older hone): measure again
        return None
    return dataclasses.replace(cached, from_cache=True)


def probe(*, measure_peaks: bool = True, refresh: bool = False, cache_dir: Path | None = None) -> Hardware:
    """This machine's facts, with peaks from the cache or measured now (seconds, in a child).

    measure_peaks=False never measures but still returns cached peaks when there are some;
    refresh=True ignores the cache (and, with measure_peaks, re-measures and rewrites it).
    If measuring fails or times out, peaks is None and a RuntimeWarning says why.
    """
    hw = _facts()
    path = _peaks.cache_path(hw.fingerprint, cache_dir)
    cached = None if refresh else _cached_peaks(path, hw.fingerprint)
    if cached is not None or not measure_peaks:
        return dataclasses.replace(hw, peaks=cached)
    measured = _peaks.measure_in_child(hw.default_threads, bf16=hw.has_bf16)
    hw = dataclasses.replace(hw, peaks=measured)
    if measured is not None:
        _peaks.write_cache(path, hw.to_dict())
    return hw
