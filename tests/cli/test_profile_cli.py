"""`hone profile` end to end on digits-cnn: JSON with every figure, roofline plot, trace."""

from __future__ import annotations

import json

import pytest

from hone.cli.app import main


@pytest.mark.slow
def test_profile_digits_cnn_json_plot_and_trace(capsys, tmp_path):
    stem, trace = tmp_path / "roofline", tmp_path / "trace.json"
    rc = main(["profile", "digits-cnn", "--json", "--scaling-max-batch", "4", "--plot", str(stem), "--trace", str(trace)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    profile = json.loads(captured.out)
    assert profile["input_set"] == "bs64" and profile["verdict"] in ("compute", "memory", "overhead")
    assert abs(sum(profile["shares"].values()) - 1) < 1e-6
    conv = next(op for op in profile["ops"] if op["name"] == "aten::convolution")
    # 2 convolutions at batch 64: 2 * (64*16*8*8 * 1*9) + 2 * (64*32*8*8 * 16*9) FLOPs
    assert conv["flops"] == pytest.approx(2 * 64 * 16 * 64 * 9 + 2 * 64 * 32 * 64 * 16 * 9)
    assert conv["bytes"] > 0 and conv["bound"] in ("compute", "memory", "overhead")
    assert conv["unit"]  # which library and ISA ran it (oneDNN / MKL verbose)
    assert [p["batch_size"] for p in profile["scaling"]] == [1, 2, 4]
    assert profile["memory"]["weights_bytes"] > 0 and profile["memory"]["largest"]
    assert profile["advice"] and profile["advice"][0]["rank"] == 1
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in stem.with_suffix(".svg").read_text()[:2000]
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("name") == "aten::convolution" for e in events)


def test_profile_text_report(capsys):
    rc = main(["profile", "digits-cnn", "--batch-sizes", "8", "--scaling-max-batch", "2", "--top", "5"])
    out = capsys.readouterr().out
    assert rc == 0
    for fragment in ("verdict:", "by op type", "aten::convolution", "latency by batch size", "memory: weights", "advice"):
        assert fragment in out


def test_profile_bad_input_set(capsys):
    rc = main(["profile", "digits-cnn", "--input-set", "bs3"])
    err = capsys.readouterr().err
    assert rc == 2 and "no input set 'bs3'" in err and "bs1, bs64" in err
