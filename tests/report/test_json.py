"""The JSON report: strict JSON, versioned, every candidate present."""

from __future__ import annotations

import dataclasses
import json

from results_factory import make_optimize_result, make_results

from hone.report.json import SCHEMA, to_json, write_json


def _strict_loads(text: str):
    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_json_has_every_candidate():
    result = make_optimize_result()
    data = _strict_loads(to_json(result))
    assert data["schema"] == SCHEMA == "hone.run/1"
    assert data["run"]["model"] == "minilm"
    assert len(data["candidates"]) == len(result.results)
    got = [(c["recipe"]["label"], c["input_set"], c["status"]) for c in data["candidates"]]
    assert got == [(r.recipe.label, r.input_set, r.status.value) for r in result.results]
    assert data["selection"]["best"]["label"] == "inductor"
    assert data["selection"]["ranking"][0]["speedup"] == 2.0
    ok = next(c for c in data["candidates"] if c["recipe"]["label"] == "inductor")
    assert ok["measurement"]["stats"]["p50_s"] == 0.005
    assert ok["build"]["built_for"] == "bs1" and ok["summary"] == ["autotuned 14 kernels"]
    assert ok["artifact"]["input_sets"] == ["bs1", "bs8"]
    assert data["builds"] == {"builds": 2, "candidates": 4}


def test_nan_and_inf_become_null():
    results = make_results()
    results[0] = dataclasses.replace(results[0], runner_info={"a": float("nan"), "b": [float("inf"), 1.0]})
    text = to_json(make_optimize_result(results))
    assert "NaN" not in text and "Infinity" not in text
    data = _strict_loads(text)
    assert data["candidates"][0]["runner_info"] == {"a": None, "b": [None, 1.0]}


def test_nothing_passed_is_still_valid_json():
    data = _strict_loads(to_json(make_optimize_result([r for r in make_results() if not r.ok])))
    assert data["selection"]["best"] is None
    assert data["selection"]["losers"]


def test_write_json(tmp_path):
    result = make_optimize_result()
    path = write_json(result, tmp_path / "out" / "run.json")
    assert path.read_text().strip() == to_json(result)
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]  # no temp file left behind
