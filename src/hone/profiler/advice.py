"""From the profile to findings, and from findings to the steps that address them.

`findings()` turns the profile's shares into ranked findings, each with its measured figure and
the units that pay off on this machine for it (bf16 units; int8 GEMMs measured faster than
fp32). Which steps address a finding is declared by the steps themselves (`Variant.addresses`,
a Claim per finding): the planner scores whole recipes from their steps' claims
(search.planner), and `advise()` lists the steps for the user. Nothing here names a recipe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hone.profiler.records import Advice, Finding, Profile

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.plugin import Claim

# A bound matters when it holds at least this share of wall time.
SIGNIFICANT_SHARE = 0.25
# Above this overhead share, lower precision cannot help: the time is not in arithmetic.
OVERHEAD_DOMINATES = 0.6


def _pct(x: float) -> str:
    return f"{x:.0%}"


def findings(profile: Profile, hw: "Hardware") -> list[Finding]:
    """The significant bounds of this profile, largest share first."""
    shares = profile.shares
    overhead, memory, compute = shares.get("overhead", 0.0), shares.get("memory", 0.0), shares.get("compute", 0.0)
    gpu = profile.device.startswith("cuda")
    found: list[Finding] = []
    if overhead >= SIGNIFICANT_SHARE:
        text = f"overhead-bound: {_pct(overhead)} of wall time is outside arithmetic (dispatch, Python, tiny ops)"
        scaling = _flat_scaling(profile)
        found.append(Finding("overhead", overhead, text + (f"; {scaling}" if scaling else "")))
    if memory >= SIGNIFICANT_SHARE:
        text = f"memory-bound: {_pct(memory)} of wall time in ops below the ridge point (bytes, not FLOPs, set their speed)"
        units = {"bf16": "bf16 halves the bytes"} if _bf16_units(hw, gpu) else {}
        found.append(Finding("memory", memory, text, units))
    if compute >= SIGNIFICANT_SHARE and overhead < OVERHEAD_DOMINATES:
        text = f"compute-bound: {_pct(compute)} of wall time in ops above the ridge point"
        units = {}
        if _bf16_units(hw, gpu):
            units["bf16"] = _bf16_reason(hw, gpu)
        int8 = None if gpu else _int8_reason(hw)
        if int8:
            units["int8"] = int8
        found.append(Finding("compute", compute, text, units))
    return sorted(found, key=lambda f: f.share, reverse=True)


def claim_reason(claim: "Claim", finding: Finding) -> str | None:
    """Why a step's claim holds for this finding here, or None when it does not (its unit does
    not pay off on this machine)."""
    if claim.unit is not None and claim.unit not in finding.units:
        return None
    return claim.reason or finding.units.get(claim.unit or "", "")


def overhead_dominates(found: list[Finding]) -> Finding | None:
    """The overhead finding when it leaves lower precision nothing to gain."""
    return next((f for f in found if f.kind == "overhead" and f.share >= OVERHEAD_DOMINATES), None)


def advise(profile: Profile, hw: "Hardware") -> list[Advice]:
    """Every step variant (by tag) that addresses a finding here, ranked by share x claim, each
    once with its strongest finding; rank 1 first."""
    from hone.search.compose import Composer
    from hone.registry import PASSES, RUNTIMES

    found = profile.findings or findings(profile, hw)
    composer = Composer(None, hw, profile.device)
    best: dict[str, tuple[float, str, str]] = {}
    for cls in [*RUNTIMES, *PASSES]:
        for fmt in cls.consumes:
            for variant in composer.variants(cls, fmt):
                for finding in found:
                    claim = variant.addresses.get(finding.kind)
                    reason = claim_reason(claim, finding) if claim else None
                    if claim is None or reason is None or not variant.tag:
                        continue
                    weight = finding.share * claim.weight
                    if variant.tag not in best or weight > best[variant.tag][0]:
                        best[variant.tag] = (weight, finding.text, reason)
    ranked = sorted(best.items(), key=lambda kv: kv[1][0], reverse=True)
    return [Advice(tag, finding, reason, rank) for rank, (tag, (_, finding, reason)) in enumerate(ranked, 1)]


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
