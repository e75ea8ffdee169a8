"""`hone optimize --recipe STACK` and `--list-recipes`: stacks by name, checked before any work."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hone.cli.app import main


def test_list_recipes_prints_what_this_machine_composes_for_the_model(capsys):
    rc = main(["optimize", "digits-cnn", "--list-recipes", "--recipe", "channels-last+pt2e-int8+aoti", "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    listed = {r["label"]: r for r in json.loads(out)}
    assert listed["eager"]["steps"] == "eager"
    assert listed["channels-last+inductor"]["steps"] == "channels_last -> inductor"  # 4-D image inputs
    assert listed["channels-last+pt2e-int8+aoti"]["steps"] == "channels_last -> pt2e_int8 -> aoti"  # asked for
    assert not Path(os.environ["HONE_DB"]).exists()  # nothing ran, nothing stored


def test_an_impossible_stack_is_one_line_naming_the_step_and_the_mismatch(capsys):
    rc = main(["optimize", "digits-cnn", "--recipe", "pt2e-int8+onnxruntime", "--no-store"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "onnxruntime takes onnx, and nothing converts torch-quantized to that" in err


@pytest.mark.slow
def test_a_named_stack_runs_beside_the_baseline(capsys):
    rc = main(["optimize", "digits-cnn", "--batch-sizes", "4", "--recipe", "channels-last+inductor", "--json",
               "--measure-time", "0.3", "--fallback-attempts", "0"])
    run = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert [c["recipe"]["label"] for c in run["candidates"]] == ["eager", "channels-last+inductor"]
    stacked = run["candidates"][1]
    assert stacked["status"] == "ok", stacked["reason"]
    assert [s["name"] for s in stacked["recipe"]["passes"]] == ["channels_last"]
    assert stacked["recipe"]["runtime"]["name"] == "inductor"
