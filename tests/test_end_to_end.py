"""`hone optimize digits-cnn` on this CPU: every candidate's status and verdict, the winner."""

from __future__ import annotations

import json
import os

import pytest

from hone.cli.app import main

pytestmark = pytest.mark.slow


def test_optimize_digits_cnn(capsys, hardware):
    from hone.models import load_model
    from hone.search.planner import plan

    # Every recipe this machine plans for the model: run, or left out with a reason (the
    # profile's pruning, the time budget, which this test sets tight enough to bite, or the
    # plateau: eight candidates in a row far behind the best).
    planned = {p.recipe.label: p for p in plan(load_model("digits-cnn"), hardware)}
    rc = main(["optimize", "digits-cnn", "--json", "--measure-time", "1", "--time-budget", "60"])
    out = capsys.readouterr().out
    assert rc == 0
    run = json.loads(out)
    by = {(c["recipe"]["label"], c["input_set"]): c for c in run["candidates"]}
    labels = {label for label, _ in by}
    int8 = {label for label, p in planned.items() if p.recipe.compute_dtype in ("int8", "int4", "fp8")} - {"fp8"}
    fallback = {label for label in labels if "+keep" in label}  # retries of quantized ones over budget
    assert {label.split("+keep")[0] for label in fallback} <= int8
    pruned = set(run["run"]["pruned"])
    refused = {p for p in pruned if p.endswith(" fallback retries")}  # retries judged unable to pay
    assert {p.removesuffix(" fallback retries") for p in refused} <= labels
    recipes_left_out = {p for p in pruned - refused if "+keep" not in p}
    assert (labels - fallback) | recipes_left_out == set(planned) and not labels & pruned
    assert all(why.startswith(("over the time budget", "the search reached a plateau"))
               or (why.startswith("overhead-bound") and "bf16" in label)
               or (label in refused and why.startswith(("cannot beat the best so far", "cannot recover the budget")))
               for label, why in run["run"]["pruned"].items())
    assert "eager" in labels  # the baseline always runs
    for input_set in ("bs1", "bs64"):  # capability-gated: never attempted on a CPU, and says why
        fp8 = by[("fp8", input_set)]
        assert fp8["status"] == "unsupported" and "compute capability 8.9" in fp8["reason"]
    assert {s for _, s in by} == {"bs1", "bs64"}

    for (label, input_set), c in by.items():
        if label == "openvino-bf16" and c["status"] == "unsupported":  # a CPU the plugin runs f32 on
            assert "runs f32, not the requested bf16" in c["reason"], c["reason"]
            continue
        if label in planned and planned[label].unavailable:  # e.g. ipex: unsupported, with why
            assert c["status"] == "unsupported" and c["reason"], (label, c["reason"])
            continue
        if label in int8 or label in fallback:
            # Quantized: the task metric decides (the tensor check is advisory), both ways.
            assert c["status"] in ("ok", "wrong_answer", "unsupported"), (label, c["reason"])
            if c["status"] != "unsupported":
                metric = c["verdict"]["metric"]
                assert c["verdict"]["tensor_check_advisory"] is True
                assert (c["status"] == "ok") == (metric["reference"] - metric["value"] <= 0.01)
            continue
        assert c["status"] == "ok", (label, input_set, c["reason"], c["log_tail"])
        metric = c["verdict"]["metric"]
        assert metric["name"] == "top1" and metric["reference"] >= 0.95
        assert metric["reference"] - metric["value"] <= 0.01  # within the accuracy budget
        m = c["measurement"]
        assert m["stats"]["p50_s"] > 0 and m["threads"] == hardware.default_threads
        assert m["peak_rss_bytes"] > 0 and m["build_s"] > 0 and m["first_call_s"] > 0

    # What ran reads back what ran; a recipe the budget left out on a slower machine is listed instead.
    for label, check in (("onnxruntime", lambda c: c["runner_info"]["providers"] == ["CPUExecutionProvider"]),
                         ("bf16", lambda c: c["verdict"]["compute_dtype"] == "bfloat16")):
        if (label, "bs1") in by:
            assert check(by[(label, "bs1")]), by[(label, "bs1")]
        else:
            assert label in pruned, label

    best = run["selection"]["best"]
    assert best is not None
    winner = [c for c in run["candidates"] if c["recipe"]["label"] == best["label"]]
    assert all(c["status"] == "ok" for c in winner)
    # Its worker saved what it measured (or said why it could not), one build serving both sets
    # where its runner takes either batch.
    assert all(c["artifact"] and (c["artifact"].get("sha256") or c["artifact"].get("unsaved")) for c in winner)
    assert all(c["build"] is not None for c in run["candidates"] if c["status"] in ("ok", "wrong_answer"))
    assert 0 < run["builds"]["builds"] <= run["builds"]["candidates"]
    # At least as fast as eager, recomputed from the raw medians rather than taken from the
    # selection's own figure: eager p50 / winner p50, geometric mean over the input sets,
    # must not fall below 1 by more than the measured spread.
    ratios, spread = [], 0.0
    for input_set in ("bs1", "bs64"):
        e, w = by[("eager", input_set)]["measurement"], by[(best["label"], input_set)]["measurement"]
        ratios.append(e["stats"]["p50_s"] / w["stats"]["p50_s"])
        spread = max(spread, e["stats"]["rel_iqr"], w["stats"]["rel_iqr"])
    geomean = (ratios[0] * ratios[1]) ** 0.5
    assert geomean >= 1 - spread
    # The selection's figure is the paired one where the winner was paired beside eager (each
    # set's geometric mean of its window ratios), else the same medians.
    paired = [by[(best["label"], s)].get("paired") for s in ("bs1", "bs64")]
    if best["label"] != "eager" and all(paired):
        for p in paired:  # each pair's ratio is eager's window over the candidate's
            assert p["ratios"] == pytest.approx([e / c for e, c in zip(p["eager_p50_s"], p["candidate_p50_s"])])
            assert p["low"] <= p["speedup"] <= p["high"]
        geomean = (paired[0]["speedup"] * paired[1]["speedup"]) ** 0.5
    ranking = {r["label"]: r["speedup"] for r in run["selection"]["ranking"]}
    assert ranking[best["label"]] == pytest.approx(geomean)

    # The run is in the store and re-renders.
    assert os.path.exists(os.environ["HONE_DB"])
    assert main(["report", "--json"]) == 0
    stored = json.loads(capsys.readouterr().out)
    assert len(stored["candidates"]) == len(run["candidates"])
    assert stored["selection"]["best"]["label"] == best["label"]
