"""From findings to recipes: what to try first, and the measured reason for each.

The planner orders (and prunes) candidates by this list, and the report shows the finding next
to each candidate, so a user sees why hone tried what it tried. Under a time budget the order
decides what runs: expensive recipes (autotuning, TVM tuning) run early only when advised here.
Advice naming a recipe the planner has not proposed on this machine is simply not followed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hone.profiler.records import Advice, Profile

if TYPE_CHECKING:
    from hone.hardware import Hardware

# A bound matters when it holds at least this share of wall time.
SIGNIFICANT_SHARE = 0.25
# Above this overhead share, lower precision cannot help: the time is not in arithmetic.
OVERHEAD_DOMINATES = 0.6


def _pct(x: float) -> str:
    return f"{x:.0%}"


def advise(profile: Profile, hw: "Hardware") -> list[Advice]:
    """Ranked advice; rank 1 first. Each item names the finding (with its figure) behind it."""
    shares = profile.shares
    overhead, memory, compute = shares.get("overhead", 0.0), shares.get("memory", 0.0), shares.get("compute", 0.0)
    gpu = profile.device.startswith("cuda")
    items: list[tuple[float, str, str, str]] = []  # (weight, recipe, finding, reason)

    if overhead >= SIGNIFICANT_SHARE:
        finding = f"overhead-bound: {_pct(overhead)} of wall time is outside arithmetic (dispatch, Python, tiny ops)"
        scaling = _flat_scaling(profile)
        if scaling:
            finding += f"; {scaling}"
        if gpu:
            items.append((overhead, "inductor-reduce-overhead", finding, "CUDA graphs replay the whole forward as one launch"))
        items.append((overhead, "onnxruntime", finding, "a C++ session runs the graph without Python dispatch per op"))
        items.append((overhead * 0.9, "inductor", finding, "fusion cuts the number of ops dispatched per call"))
        items.append((overhead * 0.5, "aoti", finding, "AOTInductor runs a compiled .so with no Python at all"))
        items.append((overhead * 0.45, "openvino", finding, "OpenVINO's C++ plugin runs the whole graph"))
        items.append((overhead * 0.4, "torchscript-trace", finding, "the TorchScript interpreter skips Python per module"))
        items.append((overhead * 0.4, "larger-batch", finding, "the same overhead is shared by more samples per call"))

    if memory >= SIGNIFICANT_SHARE:
        finding = f"memory-bound: {_pct(memory)} of wall time in ops below the ridge point (bytes, not FLOPs, set their speed)"
        items.append((memory, "inductor", finding, "fusion keeps intermediates in cache instead of writing them out"))
        if _bf16_units(hw, gpu):
            items.append((memory * 0.9, "eager-bf16", finding, "bf16 activations halve the bytes each op moves"))
        items.append((memory * 0.6, "openvino-int8-weights", finding, "int8 weights quarter the bytes of weight-streaming GEMMs"))
        items.append((memory * 0.5, "torchao-int8-weight-only", finding, "int8 weights quarter the bytes of weight-streaming GEMMs"))

    if compute >= SIGNIFICANT_SHARE and overhead < OVERHEAD_DOMINATES:
        finding = f"compute-bound: {_pct(compute)} of wall time in ops above the ridge point"
        if _bf16_units(hw, gpu):
            items.append((compute, "eager-bf16", finding, _bf16_reason(hw, gpu)))
        int8 = None if gpu else _int8_reason(hw)
        if int8:
            for share, recipe in ((0.8, "pt2e-int8"), (0.75, "openvino-int8"), (0.7, "ort-int8-static")):
                items.append((compute * share, recipe, finding, int8))
        items.append((compute * 0.5, "inductor", finding, "freezing pre-packs weights for the fastest GEMM kernels"))
        items.append((compute * 0.35, "inductor-max-autotune", finding, "GEMM templates benchmarked for these shapes"))
        items.append((compute * 0.3, "tvm-tuned", finding, "MetaSchedule tunes the compute-bound kernels for this CPU"))

    # One entry per recipe: its strongest finding decides its rank.
    best: dict[str, tuple[float, str, str]] = {}
    for weight, recipe, finding, reason in items:
        if recipe not in best or weight > best[recipe][0]:
            best[recipe] = (weight, finding, reason)
    ranked = sorted(best.items(), key=lambda kv: kv[1][0], reverse=True)
    return [Advice(recipe, finding, reason, rank) for rank, (recipe, (_, finding, reason)) in enumerate(ranked, 1)]


def not_worth_trying(profile: Profile) -> dict[str, str]:
    """Recipes the profile shows cannot pay off here -> why (the planner leaves them out)."""
    overhead = profile.shares.get("overhead", 0.0)
    if overhead >= OVERHEAD_DOMINATES:
        return {
            "eager-bf16": f"overhead-bound ({_pct(overhead)} of wall time outside arithmetic): "
            "lower precision adds casts and saves no dispatch"
        }
    return {}


def _bf16_units(hw: "Hardware", gpu: bool) -> bool:
    return any(g.capability >= (8, 0) for g in hw.gpus) if gpu else hw.has_bf16


def _bf16_reason(hw: "Hardware", gpu: bool) -> str:
    if gpu:
        return "bf16 tensor cores"
    unit = "AMX" if hw.has_amx else "avx512_bf16"
    return f"this CPU has {unit}: bf16 GEMMs run at the measured bf16 peak" + (
        f" ({hw.peaks.bf16_gflops:.0f} vs {hw.peaks.fp32_gflops:.0f} GFLOP/s fp32)" if hw.peaks and hw.peaks.bf16_gflops else ""
    )


def _int8_reason(hw: "Hardware") -> str | None:
    """Why static int8 should beat fp32 GEMMs here: the measured int8 peak (oneDNN's u8 x s8
    kernel, what the int8 recipes run) above the fp32 one; without peaks, VNNI's presence."""
    peaks = hw.peaks
    if peaks is not None and peaks.int8_gops:
        if peaks.int8_gops <= peaks.fp32_gflops:
            return None
        unit = "VNNI" if hw.has_vnni else "AVX2, 7-bit" if hw.int8_dot_saturates else "int8"
        return (f"static int8: int8 GEMMs measured at {peaks.int8_gops:.0f} GOP/s vs {peaks.fp32_gflops:.0f} "
                f"GFLOP/s fp32 ({unit} dot products)")
    return "static int8: VNNI int8 dot products" if hw.has_vnni else None


def _flat_scaling(profile: Profile) -> str | None:
    points = sorted(profile.scaling, key=lambda p: p.batch_size)
    if len(points) < 2:
        return None
    first, last = points[0], points[-1]
    growth = last.latency_s / first.latency_s
    size = last.batch_size / first.batch_size
    if growth < size ** 0.5:  # far from linear: fixed cost dominates
        return f"latency grows only x{growth:.1f} from batch {first.batch_size} to {last.batch_size}"
    return None
