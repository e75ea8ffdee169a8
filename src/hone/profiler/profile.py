"""profile_workload(): where a model's time goes, eager fp32, in this process.

    count the ops of one forward (FLOPs, bytes)        hone.profiler.count
    time them under torch.profiler, and the forward    hone.profiler.timing
    pair calls with times                              hone.profiler.join
    classify against the measured roofline             hone.profiler.roofline
    latency by batch size; memory by stage             hone.profiler.scaling, .memory

Advice is left to hone.profiler.advice: this module says what happens, not what to do.
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from hone.hardware.peaks import Peaks
from hone.hardware.probe import Hardware
from hone.models.workload import FlatIO, InputSet, Workload, normalize_outputs
from hone.profiler import roofline
from hone.profiler.count import count_ops
from hone.profiler.join import join
from hone.profiler.memory import StageRecorder, memory_profile
from hone.profiler.records import Profile
from hone.profiler.scaling import DEFAULT_MAX_BATCH, scaling, scaling_verdict
from hone.profiler.timing import measure_wall, profile_ops, threads_set
from hone.profiler.trace import nvtx_range

NO_PEAKS_NOTE = "no measured peaks: run `hone doctor`; ops are told apart by time only (overhead vs unclassified)"
# Profiled op time above the unprofiled latency by more than this share is worth a note.
OP_TIME_EXCESS_NOTE = 0.05
# A compute-bound op above its roof by more than timing noise means the cached peaks are wrong.
STALE_PEAK_SHARE = 1.15


def _pick_input_set(workload: Workload, label: str | None) -> InputSet:
    if label is not None:
        return workload.input_set(label)
    return max(workload.input_sets, key=lambda s: s.batch_size)


def _peaks_for(hw: Hardware, device: str, threads: int, notes: list[str]) -> Peaks | None:
    """The peaks that describe `device`, or None with a note saying why there are none."""
    peaks = hw.peaks
    if peaks is None:
        notes.append(NO_PEAKS_NOTE)
        return None
    kind = "cuda" if device.startswith("cuda") else "cpu"
    if not peaks.device.startswith(kind):
        notes.append(f"the measured peaks are for {peaks.device}, not {device}: {NO_PEAKS_NOTE}")
        return None
    if kind == "cpu" and peaks.threads != threads:
        notes.append(
            f"peaks were measured with {peaks.threads} threads and this profile runs {threads}: "
            "the roofline's shares of peak are relative to the former"
        )
    return peaks


def profile_workload(
    workload: Workload,
    hw: Hardware,
    *,
    input_set: str | None = None,
    threads: int | None = None,
    device: str = "cpu",
    scaling_max_batch: int = DEFAULT_MAX_BATCH,
) -> Profile:
    """Profile eager fp32 on `input_set` (default: the largest batch). scaling_max_batch < 1
    skips the batch-size sweep. Everything but `advice` is filled."""
    chosen = _pick_input_set(workload, input_set)
    threads = threads or hw.default_threads
    notes: list[str] = []
    peaks = _peaks_for(hw, device, threads, notes)
    module = workload.module.eval()
    if device != "cpu":  # never move the caller's module: a later CPU user would find it gone
        module = copy.deepcopy(module).to(device)
    named = {k: v.to(device) for k, v in chosen.tensors.items()}
    args = tuple(named.values())
    recorder = StageRecorder(device)

    with threads_set(threads):
        recorder.mark("load")
        with recorder.stage("first call"), torch.inference_mode():
            output_names = list(normalize_outputs(module(**named)))
        flat = FlatIO(module, list(named), output_names)
        # NVTX ranges (no-ops unless CUDA is up) make an Nsight Systems capture read as stages.
        with nvtx_range("hone profile: count FLOPs and bytes"):
            calls = count_ops(flat, *args)
        with nvtx_range("hone profile: op times"):
            iterations = profile_ops(flat, args, {c.name for c in calls}, device)
        with recorder.stage("steady state"), nvtx_range("hone profile: wall time"):
            wall = measure_wall(flat, args, threads=threads, device=device)
        points = []
        if scaling_max_batch >= 1:
            with nvtx_range("hone profile: batch scaling"):
                # The profiled batch's point is the whole-forward time just measured.
                points = scaling(flat, args, threads=threads, device=device, max_batch=scaling_max_batch,
                                 known={chosen.batch_size: wall.p50})

    joined = join(calls, iterations)
    notes += joined.notes()
    if device.startswith("cuda"):
        # On GPU the overhead share is the device's idle time between kernels; the launch count
        # says whether CUDA graphs (one launch for the whole forward) would remove it.
        launches = sum(len(t.kernels) for t in joined.calls)
        notes.append(f"{launches} CUDA kernel launches per forward")
    if wall.noise_warning:
        notes.append(wall.noise_warning)
    finding = scaling_verdict(points)
    if finding:
        notes.append(finding)

    wall_s = wall.p50
    profiled = sum(t.time_s for t in joined.calls)
    if wall_s > 0 and profiled > wall_s * (1 + OP_TIME_EXCESS_NOTE):
        # Observed ops cost more than the unobserved forward (on a 20 µs model the first op of an
        # iteration alone reads longer than the whole forward). Scale them down to the forward:
        # the shares stay comparable, and microsecond ops then classify as the overhead they are.
        scale = wall_s / profiled
        joined = dataclasses.replace(joined, calls=[dataclasses.replace(t, time_s=t.time_s * scale) for t in joined.calls])
        notes.append(
            f"profiled op time ({profiled * 1e3:.3f} ms) exceeded the unprofiled forward ({wall_s * 1e3:.3f} ms): "
            f"op times scaled by {scale:.2f} to it"
        )
    stats = roofline.call_stats(joined.calls, peaks, device)
    op_time = sum(s.time_s for s in stats)
    shares, verdict = roofline.shares(stats, wall_s)
    ops = roofline.aggregate(stats, peaks, device)
    # Only a compute roof is hard: cache-resident memory-bound ops legitimately beat DRAM bandwidth.
    above = [op for op in ops if op.bound == "compute" and (op.pct_of_peak or 0) > STALE_PEAK_SHARE]
    if above:
        notes.append(
            f"{above[0].name} attains {above[0].pct_of_peak:.0%} of the cached peak: the peaks look stale or were "
            "measured under load; re-measure with `hone doctor --refresh`"
        )
    return Profile(
        model=workload.name,
        input_set=chosen.label,
        device=device,
        threads=threads,
        wall_s=wall_s,
        op_time_s=op_time,
        ops=ops,
        top_ops=roofline.top_calls(stats),
        shares=shares,
        verdict=verdict,
        scaling=points,
        memory=memory_profile(recorder, module, calls),
        peaks=hw.peaks.to_dict() if hw.peaks else {},
        notes=notes,
    )
