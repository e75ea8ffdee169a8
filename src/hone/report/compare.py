"""Two stored runs side by side (`hone compare`): what each recipe measured in both, which ones
changed status, which ran in only one, and what differs between the machines and libraries.

Recipes are matched by label and input set, not by recipe key: a key hashes the step configs,
which a newer hone may extend with defaulted fields, while the label names the same stack. A
pair whose keys differ says so (`config_differs`). Each run's speedup is against its own eager
baseline (the paired figure where it has one, as its report shows); the ratio B/A compares p50s
measured on different days or machines, so it is a figure to read, not a verdict.
"""

from __future__ import annotations

from typing import Any

from hone.search.result import CandidateResult
from hone.search.run import OptimizeResult
from hone.search.select import speedup_of

# Hardware facts shown when they differ (Hardware.to_dict keys); flags are compared as sets.
HARDWARE_FACTS = ("cpu_name", "arch", "physical_cores", "logical_cores", "usable_cores", "usable_physical_cores",
                  "memory_bytes", "torch_version", "gpus")


def _baselines(result: OptimizeResult) -> dict[str, CandidateResult]:
    return {r.input_set: r for r in result.results if r.recipe.baseline}


def _side(r: CandidateResult, baseline: CandidateResult | None) -> dict[str, Any]:
    p50 = r.measurement.p50 if r.ok and r.measurement is not None and r.measurement.n else None
    return {"status": r.status.value, "p50_s": p50, "speedup": speedup_of(r, baseline), "reason": r.reason,
            "key": r.recipe.key}


def compare_runs(a: OptimizeResult, b: OptimizeResult) -> dict[str, Any]:
    """A JSON-safe comparison of run `a` with run `b` (see the module docstring)."""
    base_a, base_b = _baselines(a), _baselines(b)
    in_a = {(r.recipe.label, r.input_set): r for r in a.results}
    in_b = {(r.recipe.label, r.input_set): r for r in b.results}
    both = []
    for pair in [p for p in in_a if p in in_b]:
        side_a, side_b = _side(in_a[pair], base_a.get(pair[1])), _side(in_b[pair], base_b.get(pair[1]))
        ratio = side_b["p50_s"] / side_a["p50_s"] if side_a["p50_s"] and side_b["p50_s"] else None
        both.append({"label": pair[0], "input_set": pair[1], "a": side_a, "b": side_b, "p50_ratio_b_over_a": ratio,
                     "status_changed": side_a["status"] != side_b["status"],
                     "config_differs": side_a["key"] != side_b["key"]})

    def only(mine: dict, other: dict) -> list[dict[str, Any]]:
        return [{"label": label, "input_set": s, "status": r.status.value} for (label, s), r in mine.items()
                if (label, s) not in other]

    return {
        "a": _run_summary(a),
        "b": _run_summary(b),
        "recipes": both,
        "status_changes": [f"{row['label']} at {row['input_set']}: {row['a']['status']} -> {row['b']['status']}"
                           for row in both if row["status_changed"]],
        "only_in_a": only(in_a, in_b),
        "only_in_b": only(in_b, in_a),
        "hardware": hardware_differences(a.run.hardware, b.run.hardware, a.run.fingerprint, b.run.fingerprint),
        "versions": dict_differences(a.run.versions, b.run.versions),
        "settings": dict_differences({"threads": a.run.threads, "device": a.run.device, "model": a.run.model},
                                     {"threads": b.run.threads, "device": b.run.device, "model": b.run.model}),
    }


def _run_summary(result: OptimizeResult) -> dict[str, Any]:
    run = result.run
    best = result.selection.best
    return {"run_id": run.run_id, "created_at": run.created_at, "model": run.model, "fingerprint": run.fingerprint,
            "cpu_name": run.hardware.get("cpu_name"), "threads": run.threads, "device": run.device,
            "best": best.label if best else None}


def dict_differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[Any]]:
    """key -> [value in a, value in b] for every key whose values differ (None: absent)."""
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def hardware_differences(a: dict[str, Any], b: dict[str, Any], fingerprint_a: str, fingerprint_b: str) -> dict[str, Any]:
    flags_a, flags_b = set(a.get("flags") or []), set(b.get("flags") or [])
    return {
        "same_fingerprint": fingerprint_a == fingerprint_b,
        "fingerprint": [fingerprint_a, fingerprint_b],
        "facts": dict_differences({k: a.get(k) for k in HARDWARE_FACTS}, {k: b.get(k) for k in HARDWARE_FACTS}),
        "flags_only_in_a": sorted(flags_a - flags_b),
        "flags_only_in_b": sorted(flags_b - flags_a),
    }
