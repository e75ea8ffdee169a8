"""The plan's profile over a workload: each input set's shares count equally."""

from __future__ import annotations

import dataclasses

import pytest

from hone.profiler.across import across_sets
from hone.profiler.advice import findings
from test_advice import _hw, _profile


def test_a_batch_one_overhead_reaches_the_findings_of_a_batch_64_profile(hardware):
    large = _profile(0.4, 0.58, 0.02)
    small = dataclasses.replace(_profile(0.25, 0.15, 0.6), input_set="bs1")
    merged = across_sets(large, [small])
    assert merged.shares == pytest.approx({"compute": 0.325, "memory": 0.365, "overhead": 0.31})
    assert sum(merged.shares.values()) == pytest.approx(1.0) and merged.verdict == "memory"
    assert merged.input_set == "bs8, bs1" and merged.ops == large.ops  # the op table stays the largest set's
    assert "bs1: compute 25%, memory 15%, overhead 60%" in merged.notes[-1]
    # The largest set alone finds no overhead; over both sets it is a finding.
    assert "overhead" not in {f.kind for f in findings(large, _hw(hardware))}
    assert "overhead" in {f.kind for f in findings(merged, _hw(hardware))}
    assert across_sets(large, []) is large
