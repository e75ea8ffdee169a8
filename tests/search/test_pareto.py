"""The Pareto front over latency, accuracy and memory, with noise counted as equality."""

from __future__ import annotations

from hone.search.pareto import Point, dominated_by, front

MIB = 2**20


def test_the_front_keeps_each_choice_a_constraint_could_make():
    fast_lossy = Point("int8", 0.010, 0.02, 300 * MIB)
    exact = Point("fp32", 0.020, 0.0, 600 * MIB)
    small_slow = Point("int8-small", 0.030, 0.02, 150 * MIB)
    worse = Point("slow-fp32", 0.025, 0.0, 620 * MIB)  # slower than fp32, no smaller
    assert [p.label for p in front([fast_lossy, exact, small_slow, worse])] == ["int8", "fp32", "int8-small"]
    assert dominated_by(worse, [fast_lossy, exact]) == exact


def test_differences_within_noise_are_no_choice():
    a = Point("a", 0.010, 3e-8, 600 * MIB)
    b = Point("b", 0.014, 1e-8, 590 * MIB)  # closer in the eighth digit, 10 MiB smaller: the same
    assert a.dominates(b) and not b.dominates(a)
