"""Measured peaks of this machine: GEMM throughput per dtype and memory bandwidth.

Measured, never looked up from a spec sheet: a VM's share of a socket, its clocks and its
memory channels are what a roofline has to use. Measuring (and querying GPUs) runs in a child
process so the caller never imports torch backends nor initialises CUDA, and a hung or
crashing measurement costs a warning, not the run. Results are cached per machine
fingerprint (see hone.hardware.probe) because they take seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from hone.atomic import write_atomic

GEMM_SIZE = 2048  # side of the square GEMMs; 2*n^3 = 17.2 GFLOP, ~0.3 s in fp32 on 2 Zen 4 cores
COPY_BYTES = 256 * 2**20  # bytes copied for bandwidth; far above any L3, so it streams from DRAM
MIN_RUNS = 3  # timed runs per kernel at least (after one warm-up); the best one counts
MAX_RUNS = 10  # timed runs per kernel at most
KERNEL_BUDGET_S = 1.0  # seconds of timed runs per kernel once MIN_RUNS are done
MEASURE_TIMEOUT_S = 120.0  # the whole child measurement; ~5 s on 2 cores including torch import
GPU_QUERY_TIMEOUT_S = 60.0  # child that imports torch and reads CUDA device properties
# How the peaks are measured; a cache written by another method is measured again.
# 2: int8 through oneDNN's u8 x s8 linear (what pt2e + Inductor runs), not torch._int_mm,
#    which has no AVX2 kernel and read 100x below fp32 on CPUs without VNNI.
PEAKS_METHOD = 2
CACHE_ENV = "HONE_CACHE_DIR"
DEFAULT_CACHE_DIR = "~/.cache/hone"

# `-c` rather than `-m hone.hardware.peaks`: hone.hardware imports this module, and runpy warns
# when a module it is about to run as __main__ is already imported.
_CHILD_ENTRY = "from hone.hardware.peaks import main; main()"


def _positive(name: str, value: float | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or not math.isfinite(value) or value <= 0:
        raise ValueError(f"peak {name} must be a positive finite number, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Peaks:
    """What this machine reached, measured: GFLOP/s (GOP/s for int8) and GB/s (1e9 bytes/s)."""

    fp32_gflops: float
    bf16_gflops: float | None  # None when the CPU has no bf16 instructions (emulated bf16 is slow)
    int8_gops: float | None  # None when this torch has no int8 GEMM kernel here
    bandwidth_gbs: float  # copy: bytes read + bytes written, per second
    threads: int
    device: str  # "cpu"
    measured_at: str = ""  # ISO-8601 UTC
    from_cache: bool = False  # how this process got them, not a fact of the machine
    int8_kernel: str = ""  # what measured int8: "onednn qlinear u8s8", "fbgemm quantized.linear", ...
    method: int = PEAKS_METHOD  # how they were measured (PEAKS_METHOD of the hone that did)

    def __post_init__(self) -> None:
        _positive("fp32_gflops", self.fp32_gflops)
        _positive("bf16_gflops", self.bf16_gflops, optional=True)
        _positive("int8_gops", self.int8_gops, optional=True)
        _positive("bandwidth_gbs", self.bandwidth_gbs)
        if self.threads < 1:
            raise ValueError(f"peaks threads must be >= 1, got {self.threads}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Peaks":
        """Raises TypeError/ValueError on a malformed dict (a cache reader treats it as a miss)."""

        def opt(key: str) -> float | None:
            return None if data.get(key) is None else float(data[key])

        return cls(
            fp32_gflops=float(data["fp32_gflops"]),
            bf16_gflops=opt("bf16_gflops"),
            int8_gops=opt("int8_gops"),
            bandwidth_gbs=float(data["bandwidth_gbs"]),
            threads=int(data["threads"]),
            device=str(data["device"]),
            measured_at=str(data.get("measured_at", "")),
            from_cache=bool(data.get("from_cache", False)),
            int8_kernel=str(data.get("int8_kernel", "")),
            method=int(data.get("method", 1)),  # caches before the field was added: method 1
        )


def _best_seconds(fn: Callable[[], object], min_runs: int = MIN_RUNS) -> float:
    """Fastest of several runs after a warm-up: the peak is what the machine *can* do."""
    fn()  # warm-up: first-call allocation, oneDNN primitive creation, page faults
    best = math.inf
    start = time.perf_counter()
    for run in range(1, MAX_RUNS + 1):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        if run >= min_runs and time.perf_counter() - start >= KERNEL_BUDGET_S:
            break
    return max(best, 1e-9)  # a tiny test size can beat the timer's resolution


def measure(
    threads: int, *, bf16: bool, gemm_size: int = GEMM_SIZE, copy_bytes: int = COPY_BYTES, min_runs: int = MIN_RUNS
) -> Peaks:
    """Measure CPU peaks in this process with `threads` threads (the child calls this).

    bf16 is measured only when the caller says the CPU has bf16 instructions: without them
    torch emulates bf16 and the number would describe the emulation, not the hardware.
    """
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            n = gemm_size
            gemm_flops = 2.0 * n**3
            a, b = torch.randn(n, n), torch.randn(n, n)
            out = torch.empty(n, n)
            fp32 = gemm_flops / _best_seconds(lambda: torch.mm(a, b, out=out), min_runs) / 1e9

            bf16_gflops = None
            if bf16:
                ab, bb, ob = a.bfloat16(), b.bfloat16(), out.bfloat16()
                bf16_gflops = gemm_flops / _best_seconds(lambda: torch.mm(ab, bb, out=ob), min_runs) / 1e9

            int8_gops, int8_kernel = None, ""
            found = _int8_gemm(n)
            if found is not None:
                int8_kernel, gemm = found
                int8_gops = gemm_flops / _best_seconds(gemm, min_runs) / 1e9

            src = torch.ones(copy_bytes // 4, dtype=torch.float32)
            dst = torch.zeros_like(src)  # touched now so page faults are not timed
            bandwidth = 2.0 * src.numel() * 4 / _best_seconds(lambda: dst.copy_(src), min_runs) / 1e9
    finally:
        torch.set_num_threads(previous_threads)
    return Peaks(
        fp32_gflops=fp32,
        bf16_gflops=bf16_gflops,
        int8_gops=int8_gops,
        bandwidth_gbs=bandwidth,
        threads=threads,
        device="cpu",
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        int8_kernel=int8_kernel,
    )


def _int8_gemm(n: int) -> tuple[str, Callable[[], object]] | None:
    """An n x n x n int8 GEMM through a kernel the int8 recipes really run on this CPU, first
    that works: oneDNN's u8 x s8 linear (pt2e + Inductor lowers to it; AVX2, VNNI and AMX
    kernels), fbgemm's (torch's dynamic int8), then torch._int_mm. None when none runs."""
    import torch

    x = torch.randint(0, 256, (n, n), dtype=torch.uint8)
    w = torch.randint(-128, 128, (n, n), dtype=torch.int8)

    def onednn() -> Callable[[], object]:
        ops = torch.ops.onednn
        packed = ops.qlinear_prepack(w, [n, n])
        scales, zeros = torch.full((n,), 0.01), torch.zeros(n, dtype=torch.int64)
        return lambda: ops.qlinear_pointwise(x, 0.02, 0, packed, scales, zeros, None, 1.0, 0, torch.float32,
                                             "none", [], "")

    def fbgemm() -> Callable[[], object]:
        if "fbgemm" not in torch.backends.quantized.supported_engines:
            raise RuntimeError("no fbgemm in this torch build")
        torch.backends.quantized.engine = "fbgemm"
        xq = torch.quantize_per_tensor(torch.rand(n, n), 0.01, 0, torch.quint8)
        wq = torch.quantize_per_tensor(torch.randn(n, n), 0.02, 0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(wq, None)
        return lambda: torch.ops.quantized.linear(xq, packed, 1.0, 0)

    def int_mm() -> Callable[[], object]:
        a = torch.randint(-128, 128, (n, n), dtype=torch.int8)
        return lambda: torch._int_mm(a, w)

    for name, make in (("onednn qlinear u8s8", onednn), ("fbgemm quantized.linear u8s8", fbgemm),
                       ("torch._int_mm s8s8", int_mm)):
        try:
            gemm = make()
            gemm()  # raises here when the kernel is missing from this build or this CPU
        except (RuntimeError, NotImplementedError, AttributeError):
            continue
        return name, gemm
    return None


def query_gpus() -> list[dict[str, Any]]:
    """CUDA devices as plain dicts, in this process (the child calls this: it initialises CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        gpus.append({"name": props.name, "capability": [props.major, props.minor], "memory_bytes": props.total_memory})
    return gpus


def _child_env() -> dict[str, str]:
    # The child must import this same hone, also from a source checkout that is not installed.
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def run_child(args: list[str], *, timeout: float, what: str) -> Any:
    """Run this module's main() in a child; its JSON answer, or None (with a warning) on failure."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD_ENTRY, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_child_env(),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        message = f"{what} took over {timeout:g} s and was stopped; going on without it"
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        return None
    except OSError as exc:
        warnings.warn(f"{what} could not start: {exc}", RuntimeWarning, stacklevel=3)
        return None
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        warnings.warn(f"{what} failed: {tail[0]}", RuntimeWarning, stacklevel=3)
        return None
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        warnings.warn(f"{what} printed no JSON answer", RuntimeWarning, stacklevel=3)
        return None


def measure_in_child(threads: int, *, bf16: bool, timeout: float = MEASURE_TIMEOUT_S) -> Peaks | None:
    args = ["peaks", "--threads", str(threads)] + (["--bf16"] if bf16 else [])
    answer = run_child(args, timeout=timeout, what="measuring peaks")
    if answer is None:
        return None
    try:
        return Peaks.from_dict(answer)
    except (TypeError, ValueError, KeyError) as exc:
        warnings.warn(f"measuring peaks gave an invalid answer: {exc}", RuntimeWarning, stacklevel=2)
        return None


def query_gpus_in_child(timeout: float = GPU_QUERY_TIMEOUT_S) -> list[dict[str, Any]] | None:
    answer = run_child(["gpus"], timeout=timeout, what="querying GPUs")
    return answer if isinstance(answer, list) else None


def cache_path(fingerprint: str, cache_dir: Path | None = None) -> Path:
    """`hardware-<fingerprint>.json` in cache_dir, else $HONE_CACHE_DIR, else ~/.cache/hone."""
    folder = cache_dir or Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR).expanduser()
    return Path(folder) / f"hardware-{fingerprint}.json"


def read_cache(path: Path) -> dict[str, Any] | None:
    """The cached dict, or None when absent or unreadable; a corrupt file is just a miss
    (it gets re-measured and overwritten), never an error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):  # ValueError covers JSONDecodeError and UnicodeDecodeError
        return None
    return data if isinstance(data, dict) else None


def write_cache(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so a concurrent reader never sees half a file."""
    try:
        write_atomic(path, json.dumps(data, indent=2, sort_keys=True))
    except OSError as exc:
        warnings.warn(f"could not cache hardware peaks at {path}: {exc}", RuntimeWarning, stacklevel=2)


def main(argv: list[str] | None = None) -> None:
    """Child entry: print one JSON line (GPU list, or peaks) on stdout."""
    parser = argparse.ArgumentParser(prog="hone.hardware.peaks")
    parser.add_argument("what", choices=["gpus", "peaks"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bf16", action="store_true", help="the CPU has bf16 instructions")
    args = parser.parse_args(argv)
    if args.what == "gpus":
        answer: Any = query_gpus()
    else:
        answer = measure(args.threads, bf16=args.bf16).to_dict()
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
