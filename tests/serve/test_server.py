"""`hone serve`'s server on a real exported model: answers are the model's, concurrent requests
share a batch, and every bad request gets its 4xx and reason while the server goes on serving."""

from __future__ import annotations

import concurrent.futures
import json

import numpy as np
import pytest
import torch

from hone.serve.protocol import encode_request
from hone.serve.server import Server, ServerConfig, post

pytestmark = pytest.mark.slow


def _answer(url: str, x: np.ndarray, binary: bool = True) -> dict:
    status, text = post(url, encode_request({"x": x}, binary=binary))
    assert status == 200, text
    return json.loads(text)


def test_round_trip_and_two_concurrent_requests_served_in_one_batch(served_mlp, tmp_path):
    directory, module = served_mlp
    # A long wait: two requests sent together certainly meet in the batcher.
    config = ServerConfig.for_artifact(directory, port=0, max_batch_size=8, max_delay_ms=400, threads=1)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1, 32), dtype=np.float32), rng.standard_normal((2, 32), dtype=np.float32)]
    with Server(config, tmp_path / "serve.log") as server:
        alone = _answer(server.url, xs[0], binary=False)  # JSON in, JSON out
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            together = list(pool.map(lambda x: _answer(server.url, x), xs))
        log = server.log_tail()
    with torch.inference_mode():
        expected = [module(torch.from_numpy(x)).numpy() for x in xs]
    assert np.allclose(alone["outputs"]["output"], expected[0], atol=1e-6)
    assert alone["batch"] == {"requests": 1, "rows": 1}
    for answer, want in zip(together, expected):  # each request gets its own rows back
        assert np.array(answer["outputs"]["output"]).shape == want.shape
        assert np.allclose(answer["outputs"]["output"], want, atol=1e-6)
        assert answer["batch"] == {"requests": 2, "rows": 3}
    assert "batch: 2 request(s), 3 row(s)" in log  # the server logs what it served
    # Before it said ready, every batch size single requests make (1-8) and the largest a batch
    # holds (8 requests of up to 4 samples) ran once: no first-call compile inside a request.
    assert "warmed at 9 batch size(s)" in log


def test_each_bad_request_gets_its_4xx_and_the_server_keeps_serving(served_mlp, tmp_path):
    directory, _ = served_mlp
    config = ServerConfig.for_artifact(directory, port=0, max_batch_size=4, max_delay_ms=2, threads=1,
                                       max_body_bytes=1 << 20)
    good = np.zeros((1, 32), dtype=np.float32)
    bad = {
        "unknown input name": (json.dumps({"inputs": {"y": good.tolist()}}).encode(), 422, "missing x; unknown y"),
        "wrong shape": (encode_request({"x": np.zeros((1, 31), dtype=np.float32)}), 422, "x: shape [1, 31]"),
        "wrong rank": (json.dumps({"inputs": {"x": [0.0] * 32}}).encode(), 422, "x: rank 1"),
        "wrong dtype": (encode_request({"x": good.astype(np.float64)}), 422, "x: dtype float64, this model takes float32"),
        "too many samples": (encode_request({"x": np.zeros((9, 32), dtype=np.float32)}), 422, "9 samples in one request"),
        "unknown output": (encode_request({"x": good}, outputs=["logits"]), 422, "unknown output logits: this model gives output"),
        "not JSON": (b"{oops", 400, "not valid JSON"),
        "not an object": (b"[1, 2]", 400, '"inputs"'),
        "oversized body": (b"{" + b" " * (2 << 20) + b"}", 413, "too large"),
    }
    with Server(config, tmp_path / "serve.log") as server:
        for what, (body, status, reason) in bad.items():
            got, text = post(server.url, body)
            assert (got, reason in text) == (status, True), f"{what}: {got} {text}"
            assert "\n" not in text.strip(), what
        assert server.alive()
        assert _answer(server.url, good)["batch"]["rows"] == 1
        status, text = post(server.url, encode_request({"x": good}, outputs=["output"]))  # the outputs asked for
        assert status == 200 and list(json.loads(text)["outputs"]) == ["output"]
