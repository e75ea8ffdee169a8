"""`hone optimize --serve-sweep`: the top candidates of a real run served and driven, the chosen
configuration stored with the run and shown by every report."""

from __future__ import annotations

import json

import pytest
import torch

from hone.cli.app import main
from tiny_models import TinyMLP

pytestmark = pytest.mark.slow


def test_a_run_serves_its_top_candidates_and_stores_the_sweep(tmp_path, monkeypatch, capsys):
    import hone
    from hone.report.html import render_html
    from hone.serve.sweep import ServeSweepSettings
    from hone.search.recipe import Recipe, Step
    from hone.store import Store
    from in_process_executor import InProcessExecutor
    from plugins_for_tests import SlowEagerRuntime
    from serving_plugins import ServiceTimeConfig, ServiceTimeRuntime

    monkeypatch.setenv("HONE_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    store = tmp_path / "runs.db"
    settings = ServeSweepSettings(max_batch_sizes=(4,), layouts=((1, 1),), concurrency=(1, 2), poisson_fractions=(0.5,),
                                  level_seconds=0.5, warmup_seconds=0.1, runtime_knobs=False, time_budget_s=None)
    # A control 2 ms slower than eager, and two candidates of eager's speed (distinct configs): both
    # beat the control by far, so the top two are candidates with artifacts to serve.
    fast = [Recipe(label, (), Step(ServiceTimeRuntime.name, ServiceTimeConfig(0.0, variant=label)), origin="test")
            for label in ("fast-a", "fast-b")]
    result = hone.optimize(TinyMLP().eval(), torch.randn(4, 32), store=store, progress=False, measure_time_s=0.3,
                           recipes=[SlowEagerRuntime.recipe(), *fast], profile_first=False, serve_sweep=settings,
                           max_p99_ms=500, executor=InProcessExecutor())  # the serving, not the workers, is under test
    serving = result.run.serving
    assert serving is not None and serving["settings"]["max_p99_ms"] == 500  # optimize's target
    served = {run["candidate"] for run in serving["runs"]}
    # The top two of the ranking (a candidate that screening stopped ranks last, so it is not one).
    assert served == {r.recipe.label for r in result.selection.ranking[:2]} and result.selection.best.label in served
    assert not [w for w in result.run.warnings if w.startswith("not served")]
    assert all(run["error"] is None and run["points"] for run in serving["runs"])
    assert serving["chosen"]["meets_target"] and set(serving["single_request"]) == served

    with Store(store) as db:  # stored with the run: `hone report` shows it
        assert db.load_run(result.run.run_id).run.serving == serving
    assert main(["report", str(result.run.run_id), "--db", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run"]["serving"]["chosen"] == serving["chosen"]
    assert "serving sweep" in result.table() and "serving best:" in result.table()
    page = render_html(result)
    assert '<section id="serving">' in page and 'aria-label="plot-serving"' in page
