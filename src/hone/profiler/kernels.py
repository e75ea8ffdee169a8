"""Which unit ran an op: oneDNN / MKL verbose lines on CPU, kernel names on GPU.

What this machine (AMD EPYC Zen 4, torch 2.13 CPU, oneDNN v3.12, oneMKL 2024.0) printed:
- fp32 Linear / matmul / bmm -> MKL (SGEMM, SGEMM_BATCH), never oneDNN.
- fp32 conv, batch 1 with 3 input channels -> MKL SGEMM (aten's im2col path, "slow_conv2d");
  batch 8 -> oneDNN convolution jit:avx512_core (brg_conv_fwd:avx512_core when channels_last).
- bf16 conv (autocast or .bfloat16()) -> oneDNN convolution jit_bf16:avx512_core_bf16.
- bf16 Linear / matmul -> oneDNN matmul brg_matmul:avx512_core_bf16.
- int8 dynamic-quant Linear (qengine onednn) -> oneDNN matmul brg_matmul:avx512_core_vnni;
  torch._int_mm -> oneDNN gemm_api with no implementation named; fp16 Linear -> neither library.
- MKL's banner names no ISA here ("Intel(R) Architecture processors": its generic dispatch on
  a non-Intel CPU), so the unit says so rather than guess a vector width.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Iterable

VERBOSE_TIMEOUT_S = 120.0  # child that imports torch and runs the caller's code (~2 s for a tiny model)
# Read once at library init, hence a child. DNNL_/MKLDNN_: what oneDNN 1.x / 0.x read.
VERBOSE_ENV = {"ONEDNN_VERBOSE": "1", "DNNL_VERBOSE": "1", "MKLDNN_VERBOSE": "1", "MKL_VERBOSE": "1"}
ONEDNN_PREFIXES = ("onednn_verbose", "dnnl_verbose", "mkldnn_verbose")
REFERENCE = "reference (slow path)"

# oneDNN ISA suffix -> unit, most specific first (avx512_core_bf16 also contains "avx512").
_ISA_UNITS = (
    ("amx", "AMX"),
    ("avx512_core_fp16", "avx512 fp16"),
    ("avx512_core_bf16", "avx512 bf16"),
    ("avx512_core_vnni", "avx512 VNNI (int8)"),
    ("avx2_vnni", "avx2 VNNI (int8)"),
    ("avx512", "avx512"),
    ("avx2", "avx2"),
    ("avx", "avx"),
    ("sse41", "sse4.1"),
    ("acl", "Arm Compute Library"),
)
# MKL banner text -> ISA; anything else is the generic dispatch (see the module docstring).
_MKL_ISAS = (("AMX", "amx"), ("AVX-512", "avx512"), ("AVX512", "avx512"), ("AVX2", "avx2"), ("AVX", "avx"))
_MKL_CALL = re.compile(r"^MKL_VERBOSE\s+([A-Z][A-Z0-9_]*)\((.*)\)\s+([\d.]+)\s*(ns|us|ms|s)\b")
_MKL_BANNER = re.compile(r"^MKL_VERBOSE\s+(oneMKL|Intel\(R\) (MKL|Math Kernel Library))")
_TIME_TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
_SRC_DTYPE = re.compile(r"\bsrc[:_]([a-z0-9]+)")

# Data-type families, so torch names, oneDNN names and MKL function names compare.
_DTYPE_FAMILY = {
    "f32": "f32", "float32": "f32", "float": "f32", "f64": "f64", "float64": "f64",
    "bf16": "bf16", "bfloat16": "bf16", "f16": "f16", "float16": "f16", "half": "f16",
    "s8": "int8", "u8": "int8", "int8": "int8", "uint8": "int8", "qint8": "int8", "quint8": "int8",
    "fp32": "f32", "fp16": "f16", "float8_e4m3fn": "fp8", "float8_e5m2": "fp8", "fp8": "fp8",
}  # fmt: skip
_MKL_DTYPE_MARKERS = (("BF16", "bf16"), ("F16", "f16"), ("S8", "int8"), ("U8", "int8"))
_MKL_DTYPE_PREFIX = {"S": "f32", "D": "f64", "H": "f16", "C": "c64", "Z": "c128"}

# aten/quantized op -> primitive kinds that can run it, in the order to look them up. "gemm" is
# MKL: fp32 GEMMs and small fp32 convs (im2col) go there, bf16/int8 ones go to oneDNN.
_GEMM_KINDS = ("matmul", "inner_product", "gemm")
_CONV_KINDS = ("convolution", "gemm")
ATEN_PRIMITIVES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::matmul"), _GEMM_KINDS),
    **dict.fromkeys(("aten::linear", "aten::mkldnn_linear", "mkldnn::_linear_pointwise"), _GEMM_KINDS),
    **dict.fromkeys(("quantized::linear", "quantized::linear_dynamic", "onednn::qlinear_pointwise"), _GEMM_KINDS),
    "aten::_int_mm": ("gemm_api", "matmul"),
    "aten::mkldnn_max_pool2d": ("pooling",),
    **dict.fromkeys(("aten::convolution", "aten::_convolution", "aten::conv1d", "aten::conv2d"), _CONV_KINDS),
    **dict.fromkeys(("aten::conv3d", "aten::mkldnn_convolution", "mkldnn::_convolution_pointwise"), _CONV_KINDS),
    **dict.fromkeys(("quantized::conv2d", "onednn::qconv2d_pointwise"), ("convolution",)),
    **dict.fromkeys(("aten::_slow_conv2d_forward", "aten::thnn_conv2d"), ("gemm",)),
    **dict.fromkeys(("aten::conv_transpose2d", "aten::conv_transpose1d"), ("deconvolution", "gemm")),
}


@dataclasses.dataclass(frozen=True)
class KernelLine:
    """One executed primitive (oneDNN) or BLAS call (MKL)."""

    library: str  # "oneDNN" | "MKL"
    kind: str  # oneDNN primitive kind ("convolution", "matmul", "reorder", ...); "gemm" for MKL
    impl: str  # "brg_matmul:avx512_core_bf16"; MKL: the function ("SGEMM")
    dtype: str  # family of the source data: "f32", "bf16", "f16", "int8", "f64", "" unknown
    time_ms: float | None
    unit: str  # "oneDNN avx512 bf16", "MKL sgemm (avx512)"


def dtype_family(name: str) -> str:
    """'bfloat16', 'torch.bfloat16', 'bf16' -> 'bf16'; unknown names -> ''."""
    return _DTYPE_FAMILY.get(name.lower().removeprefix("torch."), "")


def classify_cpu_unit(impl: str) -> str:
    """oneDNN implementation name -> short unit: 'brg:avx512_core_amx' -> 'AMX', 'ref:any' -> reference."""
    name = impl.lower()
    for marker, unit in _ISA_UNITS:
        if marker in name:
            return unit
    if name.startswith(("ref", "simple")) or ":ref" in name:
        return REFERENCE
    if name.startswith(("jit", "brg")) or "gemm:jit" in name:
        return "jit (ISA chosen at run time)"  # jit:uni / jit:blk reorders name no ISA
    return name or "implementation not reported"  # gemm_api lines leave it empty


def parse_onednn_verbose(lines: Iterable[str]) -> list[KernelLine]:
    """Executed primitives from oneDNN 0.x-3.x verbose output; other lines are ignored."""
    found = []
    for line in lines:
        fields = line.strip().split(",")
        if fields[0] not in ONEDNN_PREFIXES or "exec" not in fields:
            continue
        at = fields.index("exec")
        # Graph-API lines use another template (partitions, not primitives); their compiled
        # primitives are also printed as primitive lines, so skipping them loses nothing.
        if "graph" in fields[:at]:
            continue
        rest = fields[at + 1 :]
        rest = rest[1:] if rest[:1] in (["cpu"], ["gpu"]) else rest  # 0.x prints no engine
        if len(rest) < 2:
            continue
        kind, impl = rest[0], rest[1]
        src = _SRC_DTYPE.search(line)
        time_ms = float(fields[-1]) if re.fullmatch(r"\d+(?:\.\d*)?", fields[-1]) else None
        unit = f"oneDNN {classify_cpu_unit(impl)}"
        found.append(KernelLine("oneDNN", kind, impl, dtype_family(src.group(1)) if src else "", time_ms, unit))
    return found


def _mkl_isa(banner: str) -> str:
    for marker, isa in _MKL_ISAS:
        if marker in banner:
            return isa
    return "generic dispatch"


def _mkl_dtype(function: str) -> str:
    if function.startswith("GEMM_"):  # mixed-precision GEMMs name their types: GEMM_BF16BF16F32
        return next((family for marker, family in _MKL_DTYPE_MARKERS if marker in function[5:]), "")
    return _MKL_DTYPE_PREFIX.get(function[0], "")


def parse_mkl_verbose(lines: Iterable[str]) -> list[KernelLine]:
    """MKL calls; the ISA comes from the banner MKL prints before its first call."""
    isa = ""
    found = []
    for line in map(str.strip, lines):
        if _MKL_BANNER.match(line):
            isa = _mkl_isa(line)
            continue
        call = _MKL_CALL.match(line)
        if call is None:
            continue
        function, _, value, scale = call.groups()
        unit = f"MKL {function.lower()}" + (f" ({isa})" if isa else "")
        time_ms = float(value) * _TIME_TO_MS[scale]
        found.append(KernelLine("MKL", "gemm", function, _mkl_dtype(function), time_ms, unit))
    return found


def primitive_units(lines: Iterable[str], dtype: str | None = None) -> dict[str, str]:
    """Primitive kind -> the unit that spent the most time on it (optionally for one dtype)."""
    lines = list(lines)
    family = dtype_family(dtype) if dtype else ""
    totals: dict[str, dict[str, float]] = {}
    for k in parse_onednn_verbose(lines) + parse_mkl_verbose(lines):
        if family and k.dtype != family:
            continue
        by_unit = totals.setdefault(k.kind, {})
        by_unit[k.unit] = by_unit.get(k.unit, 0.0) + (k.time_ms or 0.0)
    return {kind: max(by_unit, key=by_unit.__getitem__) for kind, by_unit in totals.items()}


def unit_for_op(op_name: str, units: dict[str, str]) -> str:
    """The unit of an aten op from primitive_units(); '' when no library ran it (aten's own kernel)."""
    for kind in ATEN_PRIMITIVES.get(op_name, ()):
        if kind in units:
            return units[kind]
    return ""


def run_with_cpu_verbose(python_code: str, timeout_s: float = VERBOSE_TIMEOUT_S) -> list[str]:
    """Run `python_code` in a child with oneDNN and MKL verbose on; its stdout lines.

    A child, because both libraries read the switch once at init and print to the process's
    stdout (not Python's sys.stdout). A failing or hung child costs a warning and returns what
    it printed so far: unit labels are a nicety, never a reason to stop a profile.
    """
    root = str(Path(__file__).resolve().parents[2])  # so the child imports this same hone
    env = {**os.environ, **VERBOSE_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-c", python_code]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        warnings.warn(f"verbose run took over {timeout_s:g} s and was stopped", RuntimeWarning, stacklevel=2)
        out = exc.stdout or ""
        return (out.decode(errors="replace") if isinstance(out, bytes) else out).splitlines()
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        warnings.warn(f"verbose run failed: {tail[0]}", RuntimeWarning, stacklevel=2)
    return proc.stdout.splitlines()


# GPU: tensor cores or CUDA cores, read from kernel names (cuBLAS, cuDNN, CUTLASS, flash-attn).
# A name that says which MMA instruction or tile shape it uses is conclusive: hmma/imma/dmma
# (Volta+ warp MMA), gmma/wgmma/warpgroup (Hopper), "tensorop"/wmma (CUTLASS), "tensor16x8x16"
# (xmma), and cuBLAS's instruction-shape codes s884/s1688/s16816/i8816/i16832 before "gemm".
_TENSOR_CORE = re.compile(
    r"[hidgq]mma|warpgroup|tensorop|tensor\d+x\d+x\d+|[shi](?:884|1688|16816|161616|8816|16832)\w*?gemm"
    r"|[a-z_](?:884|1688|16816|16832|8816)(?:_|$)"
)
# Otherwise CUDA-core code says so: CUTLASS "simt", xmma built on "ffma", cuBLAS s/dgemm, gemv.
_SIMT = re.compile(r"simt|ffma|[sd]gemm|gemv|gemmk1")
# xmma (cuBLAS/cuDNN) names list operand types: only low-precision or tf32 ones use tensor cores
# ("sm80_xmma_gemm_f32f32_f32f32_f32" is SIMT fp32, "..._tf32f32_..." is TF32 on tensor cores).
_MMA_TYPES = re.compile(r"bf16|f16|tf32|i8|s8|int8|e4m3|e5m2|fp8")
_TENSOR_DTYPES = ("f16", "bf16", "int8", "fp8")  # families tensor cores run; fp32 only as TF32
_MATMUL_LIKE = re.compile(r"mm|gemm|conv|attn|attention|dot")
TENSOR_CORE = "tensor core"
SIMT = "CUDA cores (SIMT)"


def is_tensor_core_kernel(kernel_name: str, dtype: str | None = None) -> bool:
    """Whether a CUDA kernel ran on tensor cores, from its name; `dtype` settles generic names
    (an inductor "triton_tem_fused_mm" template runs tensor cores for bf16, not for fp32)."""
    name = kernel_name.lower()
    if _TENSOR_CORE.search(name):
        return True
    if _SIMT.search(name):
        return False
    if "xmma" in name or "fmha" in name:
        return bool(_MMA_TYPES.search(name))
    if "flash_fwd" in name or "flash_bwd" in name or "flash::" in name:
        return True  # flash-attention has only MMA kernels (fp16/bf16)
    return dtype_family(dtype or "") in _TENSOR_DTYPES and bool(_MATMUL_LIKE.search(name))


def gpu_unit(kernel_names: Iterable[str], dtype: str | None = None) -> str:
    """'tensor core' if any of an op's kernels used them, else 'CUDA cores (SIMT)'; '' for none."""
    names = list(kernel_names)
    if not names:
        return ""
    return TENSOR_CORE if any(is_tensor_core_kernel(n, dtype) for n in names) else SIMT
