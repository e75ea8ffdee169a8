"""OptimizeResult.export / .runner: the winner's saved artifact, checked against the checksum
stored with its result, copied or loaded as it is; every way it can be missing is said."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import hone
from hone import export
from hone.errors import HoneError, InputError, Unsupported
from harness import build
from results_factory import EAGER, make_optimize_result, make_results
from tiny_models import TinyMLP


def _saved_artifact(where) -> tuple[dict, torch.Tensor]:
    """An eager build saved as a worker saves it, and the record a result keeps of it."""
    torch.manual_seed(0)
    model, x = TinyMLP().eval(), torch.randn(4, 32)
    runner, _, named, expected = build(EAGER, model, x)
    export.save(runner, EAGER, where, input_names=list(named), output_names=list(expected), example_inputs=(x,),
                reference=tuple(expected.values()))
    manifest = export.read_manifest(where)
    record = {"dir": str(where), "sha256": manifest["sha256"], "checksums": manifest["checksums"],
              "files": manifest["files"], "input_sets": ["bs1", "bs8"]}
    return record, x


def _with_winner_artifact(artifact: dict | None):
    """The synthetic run (inductor wins) with the winner's artifact replaced."""
    results = [dataclasses.replace(r, artifact=artifact) if r.recipe.label == "inductor" else r for r in make_results()]
    result = make_optimize_result(results)
    assert result.selection.best.label == "inductor"
    return result


def test_export_copies_the_checked_artifact_and_runner_loads_it(tmp_path):
    artifact, x = _saved_artifact(tmp_path / "run" / "build0-bs1")
    result = _with_winner_artifact(artifact)
    where = result.export(tmp_path / "out")  # the largest input set by default
    manifest = json.loads((where / "manifest.json").read_text())
    assert manifest["sha256"] == artifact["sha256"] and manifest["input_set"] == "bs8"
    assert manifest["model"] == "minilm" and manifest["hardware"] == result.run.fingerprint
    assert export.verify(where, sha256=artifact["sha256"])
    torch.testing.assert_close(hone.load(where)(x)[0], result.runner("bs1")(x)[0])
    assert result.export(tmp_path / "small", input_set="bs1")
    with pytest.raises(InputError, match="no input set 'bs64'"):
        result.export(tmp_path / "other", input_set="bs64")


def test_an_artifact_that_differs_from_the_stored_checksum_is_refused(tmp_path):
    artifact, _ = _saved_artifact(tmp_path / "run" / "build0-bs1")
    result = _with_winner_artifact({**artifact, "sha256": "0" * 64})  # stored for another artifact
    with pytest.raises(InputError, match="does not match the checksum recorded"):
        result.export(tmp_path / "out")
    with pytest.raises(InputError, match="does not match the checksum recorded"):
        result.runner()
    assert not (tmp_path / "out").exists()  # nothing half-copied
    data = bytearray((tmp_path / "run" / "build0-bs1" / "model.pt2").read_bytes())
    data[100] ^= 0xFF
    (tmp_path / "run" / "build0-bs1" / "model.pt2").write_bytes(bytes(data))
    with pytest.raises(InputError, match="model.pt2 changed since it was saved"):
        _with_winner_artifact(artifact).export(tmp_path / "out2")


def test_a_winner_without_a_saved_form_says_why():
    result = _with_winner_artifact({"unsaved": "InductorRunner has no saved form", "input_sets": ["bs1", "bs8"]})
    with pytest.raises(Unsupported, match="inductor cannot be exported: InductorRunner has no saved form"):
        result.export("never-written")
    with pytest.raises(Unsupported, match="has no saved form"):
        result.runner()


def test_a_missing_artifact_is_said(tmp_path):
    gone = _with_winner_artifact({"dir": str(tmp_path / "deleted"), "sha256": "0" * 64, "checksums": {},
                                  "files": ["model.pt2"], "input_sets": ["bs1", "bs8"]})
    with pytest.raises(HoneError, match="no longer exists"):
        gone.export(tmp_path / "out")
    with pytest.raises(HoneError, match="has no saved artifact at bs8"):
        _with_winner_artifact(None).export(tmp_path / "out")
    nothing = make_optimize_result([r for r in make_results() if not r.ok])
    with pytest.raises(HoneError, match="nothing to export"):
        nothing.export(tmp_path / "out")
