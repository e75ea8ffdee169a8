"""`hone verify DIR` on a real export of a tiny model's run: it holds when nothing changed, and
fails, with one line saying why, on a tampered file, on outputs beyond tolerance and on a
latency regression."""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest

from hone import export
from hone.cli.app import main

FACTORY = textwrap.dedent("""
    import torch

    class Mlp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))

        def forward(self, x):
            return self.layers(x)

    def make(seed=0):
        torch.manual_seed(seed)
        return Mlp().eval(), torch.randn(4, 32)

    def other():  # the same architecture with other weights: not the model that was exported
        return make(seed=1)
""")
# The pass path, not performance, is under test: a shared 2-core machine can run a tiny model's
# calls a few times slower than its worker did minutes before, so passing runs get room.
ROOMY = ["--latency-margin", "3", "--measure-time", "0.5"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One small real run (eager and ONNX Runtime, stored) and its winner exported."""
    import hone

    root = tmp_path_factory.mktemp("verify")
    (root / "tiny.py").write_text(FACTORY)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HONE_CACHE_DIR", str(root / "cache"))
        result = hone.optimize(f"{root}/tiny.py:make", store=root / "runs" / "hone.db", progress=False,
                               measure_time_s=0.3, recipes=["onnxruntime"], profile_first=False)
    assert result.selection.best is not None
    return result.export(root / "out"), f"{root}/tiny.py"


def _copy(exported, tmp_path):
    return shutil.copytree(exported[0], tmp_path / "copy")


def _verify(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["verify", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _edit_manifest(directory, edit) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_a_fresh_export_holds(exported, capsys):
    directory, factory = exported
    rc, out, err = _verify(capsys, directory, "--model", f"{factory}:make", "--json", *ROOMY)
    assert rc == 0, err
    report = json.loads(out)
    assert report["holds"] is True and err == ""
    assert {c["name"]: c["status"] for c in report["checks"]} == {
        "checksums": "ok", "outputs": "ok", "model": "ok", "latency": "ok"}
    latency = report["latency"]
    manifest = json.loads((directory / "manifest.json").read_text())
    assert latency["recorded_p50_s"] == manifest["timing"]["p50_s"] and latency["comparable"] is True
    assert latency["threads"] == manifest["timing"]["threads"] and latency["batch_size"] == 4


def test_a_tampered_weights_file_fails_on_its_checksum(exported, tmp_path, capsys):
    directory = _copy(exported, tmp_path)
    weights = next(name for name in export.read_manifest(directory)["files"] if name.endswith(".data"))
    data = bytearray((directory / weights).read_bytes())
    data[len(data) // 2] ^= 0x01
    (directory / weights).write_bytes(bytes(data))
    rc, out, err = _verify(capsys, directory, *ROOMY)
    assert rc == 1
    assert f"error: checksums: artifact {directory}: {weights} changed since it was saved" in err
    assert "FAIL  checksums" in out and "does not hold" in out


def test_outputs_beyond_tolerance_fail(exported, tmp_path, capsys):
    # Weights scaled and the manifest's checksums written again to match: the files are
    # consistent, but the graph no longer computes what was validated.
    import numpy

    directory = _copy(exported, tmp_path)
    manifest = export.read_manifest(directory)
    weights = next(name for name in manifest["files"] if name.endswith(".data"))
    values = numpy.fromfile(directory / weights, dtype=numpy.float32)
    (values * 1.5).tofile(directory / weights)
    sums = export.checksums(directory, list(manifest["checksums"]))
    _edit_manifest(directory, lambda m: m.update(checksums=sums, sha256=export.digest(sums)))
    rc, _, err = _verify(capsys, directory, *ROOMY)
    assert rc == 1
    assert "error: outputs: " in err and "misses the eager fp32 reference on its example inputs" in err


def test_another_model_than_the_one_exported_fails_the_model_check(exported, capsys):
    directory, factory = exported
    rc, _, err = _verify(capsys, directory, "--model", f"{factory}:other", *ROOMY)
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model: output 'output' misses")


def test_a_latency_regression_fails(exported, tmp_path, capsys):
    # The record says the artifact once ran ten times faster than it did: today's p50 is then
    # about ten times the recorded one, far beyond the default margin of 25 %.
    directory = _copy(exported, tmp_path)
    _edit_manifest(directory, lambda m: m["timing"].update(p50_s=m["timing"]["p50_s"] / 10))
    rc, _, err = _verify(capsys, directory, "--measure-time", "0.5")
    assert rc == 1
    assert "error: latency: p50 " in err and "slower than recorded x 1.25" in err


def test_another_machine_makes_latency_a_warning_unless_strict(exported, tmp_path, capsys):
    directory = _copy(exported, tmp_path)
    _edit_manifest(directory, lambda m: m["timing"].update(p50_s=m["timing"]["p50_s"] / 10, fingerprint="0" * 16,
                                                           cpu_name="Some Other CPU"))
    rc, out, err = _verify(capsys, directory, "--measure-time", "0.5", "--json")
    assert rc == 0, err
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["machine"]["status"] == "warn"
    assert checks["machine"]["detail"].startswith("recorded on another machine (Some Other CPU, fingerprint 0000000000000000")
    assert checks["latency"]["status"] == "warn" and "measured elsewhere (--strict to fail on it)" in checks["latency"]["detail"]
    rc, _, err = _verify(capsys, directory, "--measure-time", "0.5", "--strict")
    assert rc == 1 and "error: latency: " in err and "error: machine: recorded on another machine" in err


def test_a_manifest_without_timing_says_latency_is_not_checked(exported, tmp_path, capsys):
    directory = _copy(exported, tmp_path)
    _edit_manifest(directory, lambda m: m.pop("timing"))
    rc, out, err = _verify(capsys, directory, *ROOMY)
    assert rc == 0, err
    assert "skip  latency    not checked: the manifest records no export-time p50" in out and "holds" in out
    rc, _, err = _verify(capsys, directory, "--strict", *ROOMY)
    assert rc == 1 and "error: latency: not checked" in err


def test_a_directory_that_is_not_an_artifact_is_bad_input(tmp_path, capsys):
    rc, _, err = _verify(capsys, tmp_path)
    assert rc == 2 and "has no manifest.json" in err and "Traceback" not in err
