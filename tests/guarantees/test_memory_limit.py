"""Guarantee: each worker runs under a memory limit (a fraction of the machine's by default,
configurable); a candidate whose processes really allocate past it is `oom` with the figure,
and the next candidate starts and finishes normally."""

from __future__ import annotations

import re

import pytest

import hone
from hone.errors import InputError
from hone.search.memory_watch import limit_bytes, parse_memory_limit, total_memory_bytes
from hone.search.result import Status
from plugins_for_tests import AllocateRuntime, CountingRuntime
from skips import REQUIRES_6_GIB
from tiny_models import tiny_mlp


@pytest.mark.slow
def test_a_candidate_past_its_memory_limit_is_oom_with_the_figure_and_the_next_runs(tmp_path):
    if total_memory_bytes() < 6 * 2**30:  # so that the limit, not the machine, stops its 3 GiB
        pytest.skip(REQUIRES_6_GIB)
    model, x = tiny_mlp()
    result = hone.optimize(model, x, recipes=[AllocateRuntime.recipe(), CountingRuntime.recipe()], worker_memory="1.25GiB",
                           store=tmp_path / "runs.db", progress=False, measure_time_s=0.1, fallback_attempts=0)
    by_label = {r.recipe.label: r for r in result.results}
    oom = by_label["test_allocate"]
    assert oom.status is Status.OOM, oom.reason
    used = float(re.search(r"used ([\d.]+) GiB, over the worker memory limit of 1.25 GiB", oom.reason).group(1))
    assert 1.25 <= used < 3.0  # really allocated past the limit (to 2 decimals), stopped long before its 3 GiB
    assert by_label["test_counting"].status is Status.OK and result.selection.best is not None


@pytest.mark.parametrize("text, expected", [
    ("0.5", 0.5), ("6GiB", 6 * 2**30), ("512M", 512 * 2**20), ("2g", 2 * 2**30), ("off", None), (None, None),
    (0.25, 0.25),
])
def test_the_limit_is_a_fraction_or_a_size(text, expected):
    assert parse_memory_limit(text) == expected


def test_a_fraction_is_taken_of_this_machines_memory():
    assert limit_bytes(0.5) == int(0.5 * total_memory_bytes()) and limit_bytes(None) is None


@pytest.mark.parametrize("bad", ["lots", "-1", "1.5x"])
def test_a_bad_limit_is_refused_before_any_work(tmp_path, bad):
    model, x = tiny_mlp()
    with pytest.raises(InputError, match="worker memory"):
        hone.optimize(model, x, worker_memory=bad, store=tmp_path / "runs.db", progress=False)
    assert not (tmp_path / "runs.db").exists()
