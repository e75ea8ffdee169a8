"""The serving sweep on a model of known capacity (a fixed 20 ms a forward, whatever the batch):
beyond capacity the p99 shows the queue, and the p99 target picks batching."""

from __future__ import annotations

import pytest
import torch

from hone.cost.pricing import Price
from hone.serve.sweep import Candidate, ServeSweepSettings, choose, run_serving_sweep
from tiny_models import TinyMLP

pytestmark = pytest.mark.slow


def test_queueing_beyond_capacity_and_the_p99_target_choosing_batching(tmp_path):
    from serving_plugins import export_served

    torch.manual_seed(0)
    directory = export_served(tmp_path / "slow", TinyMLP().eval(), {"x": torch.randn(4, 32)}, service_s=0.02)
    settings = ServeSweepSettings(max_batch_sizes=(1, 8), max_delay_ms=5, layouts=((1, 1),), concurrency=(1, 2, 4, 8),
                                  poisson_fractions=(0.5,), level_seconds=1.0, warmup_seconds=0.2, max_p99_ms=80,
                                  time_budget_s=None)
    single = {"input_set": "bs1", "batch_size": 1, "p50_s": 0.02, "throughput_per_s": 50.0}
    price = Price(0.36, instance="test.large")  # $0.36 an hour: $0.1 / 1M at 1000 samples a second
    sweep = run_serving_sweep([Candidate("slow", str(directory), {}, single)], settings, tmp_path / "logs", cores=1,
                              price=price)
    assert not sweep.skipped and all(run.error is None for run in sweep.runs), [r.error for r in sweep.runs]
    unbatched, batched = (next(r for r in sweep.runs if r.config.max_batch_size == b) for b in (1, 8))

    # One forward at a time, 20 ms each: about 50 answers a second whatever the concurrency, so
    # concurrency 8 waits in line: its p99 is several services long.
    by_level = {int(p.level): p for p in unbatched.points if p.mode == "concurrency"}
    assert 30 < by_level[1].throughput_per_s < 55 and by_level[1].p99_s < 0.05
    assert max(by_level) >= 4 and by_level[max(by_level)].throughput_per_s < 1.3 * by_level[2].throughput_per_s
    assert by_level[max(by_level)].p99_s > 2.5 * by_level[1].p99_s
    poisson = [p for p in unbatched.points if p.mode == "poisson"]
    assert len(poisson) == 1 and poisson[0].level == pytest.approx(0.5 * unbatched.capacity)

    # Batching serves several requests per forward: more throughput within the 80 ms target.
    assert batched.capacity > 2.5 * unbatched.capacity
    chosen = sweep.chosen
    assert chosen is not None and chosen["meets_target"] and chosen["config"]["max_batch_size"] == 8
    assert chosen["point"]["p99_s"] <= 0.08 and chosen["point"]["mean_batch_requests"] > 1.5
    assert "x the 50/s of one call at a time" in sweep.why
    # What it costs: $0.36 / (throughput x 3600 s) x 1e6, beside one call at a time (50/s: $2 / 1M).
    assert chosen["usd_per_million"] == pytest.approx(0.36 / (chosen["point"]["throughput_per_s"] * 3600) * 1e6)
    assert "/ 1M priced as test.large ($2 one call at a time)" in sweep.why

    # No point can meet 5 ms (a forward takes 20): the lowest p99 is named, as best effort.
    best_effort, why, missed = choose(sweep.runs, 5.0, {})
    lowest = min(p.p99_s for r in sweep.runs for p in r.points if p.clean)
    assert missed and best_effort["point"]["p99_s"] == lowest and "no point met the target" in why


def test_a_configuration_that_no_longer_fits_the_budget_is_listed_not_run(tmp_path):
    from serving_plugins import export_served

    directory = export_served(tmp_path / "slow", TinyMLP().eval(), {"x": torch.randn(2, 32)}, service_s=0.001)
    settings = ServeSweepSettings(max_batch_sizes=(1, 4), layouts=((1, 1),), concurrency=(1, 2), poisson_fractions=(),
                                  level_seconds=0.5, warmup_seconds=0.0, time_budget_s=1.0)
    sweep = run_serving_sweep([Candidate("fast", str(directory))], settings, tmp_path / "logs", cores=1)
    assert not sweep.runs and sweep.chosen is None
    assert [s["config"] for s in sweep.skipped] == ["no batching, 1x1 threads", "batch<=4 wait 5ms, 1x1 threads"]
    assert all("of the serving sweep's 1 s left" in s["why"] for s in sweep.skipped)
